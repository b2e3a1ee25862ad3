package pid1

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"path/filepath"

	"github.com/hashicorp/go-multierror"
	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"

	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

// A mount is one file system init mounts before anything else runs.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var mounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
	{"hugetlbfs", "/dev/hugepages", "hugetlbfs", unix.MS_NOSUID | unix.MS_NODEV, "pagesize=2M"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
}

// mountAll mounts the file systems every component expects. A file system
// that is already mounted (EBUSY) is fine.
func mountAll() error {
	var errs *multierror.Error
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			errs = multierror.Append(errs, fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err))
		}
	}
	return errs.ErrorOrNil()
}

// loadModules loads the named kernel modules and their dependencies from
// /lib/modules/<release>, following the modules.dep the image builder wrote.
// The modules load concurrently; kmodule's Prober loads a shared dependency
// once, before any module that needs it.
func loadModules(names ...string) error {
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return fmt.Errorf("kernel modules: %w", err)
	}
	var (
		mu   sync.Mutex
		errs *multierror.Error
		wg   sync.WaitGroup
	)
	for _, n := range names {
		wg.Go(func() {
			if err := p.Probe(n, ""); err != nil {
				mu.Lock()
				errs = multierror.Append(errs, fmt.Errorf("loading module %s: %w", n, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errs.ErrorOrNil()
}

// reserveHugePages asks the kernel for n 2 MiB pages for packet pools and
// returns how many it got (it may give fewer when memory is short).
func reserveHugePages(n int) (int, error) {
	const knob = "/proc/sys/vm/nr_hugepages"
	if err := os.WriteFile(knob, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return 0, fmt.Errorf("reserving %d huge pages: %w", n, err)
	}
	b, err := os.ReadFile(knob)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// poweroff flushes file systems and powers the machine off. It does not return.
func poweroff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

// runDirs creates the directories under /run the components use: the
// store's, owned by the store's uid so that it can create its socket, and
// the profiles', which every component writes (sticky, like /tmp).
func runDirs() error {
	st, _ := sandbox.Lookup("store")
	dirs := []struct {
		path     string
		mode     os.FileMode
		uid, gid int
	}{
		{filepath.Dir(LocalCtl), 0o755, 0, 0},
		{filepath.Dir(store.DefaultPath), 0o755, int(st.UID), int(st.GID)},
		{profile.Dir, 0o1777, 0, 0},
	}
	var errs *multierror.Error
	for _, d := range dirs {
		if err := os.MkdirAll(d.path, 0o755); err != nil {
			errs = multierror.Append(errs, err)
			continue
		}
		// MkdirAll's mode passes through the umask, and the sticky bit
		// only through chmod.
		if err := os.Chmod(d.path, d.mode); err != nil {
			errs = multierror.Append(errs, err)
		}
		if err := os.Chown(d.path, d.uid, d.gid); err != nil {
			errs = multierror.Append(errs, err)
		}
	}
	return errs.ErrorOrNil()
}
