package pid1

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// owner tells whether a pid is a child the supervisor waits for itself.
type owner interface{ Owns(pid int) bool }

// reapOrphans collects zombies that are not the supervisor's own children:
// processes a crashed component left behind, reparented to PID 1.
//
// The supervisor reaps its own children through exec.Cmd.Wait, so init must
// never wait4(-1): it would steal their exit status. Instead it scans /proc
// for zombies whose parent is init (on SIGCHLD, and every period), and reaps
// one only when it was already a zombie at the previous scan and the
// supervisor does not own it. A child the supervisor just forked but has not
// yet recorded is therefore never taken: its own Wait collects it long
// before a second scan.
func reapOrphans(ctx context.Context, o owner, every time.Duration) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(every)
	defer tick.Stop()
	seen := map[int]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			time.Sleep(50 * time.Millisecond) // let the supervisor's Wait go first
		case <-tick.C:
		}
		now := map[int]bool{}
		for _, pid := range zombieChildren() {
			if o != nil && o.Owns(pid) {
				continue
			}
			if seen[pid] {
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, unix.WNOHANG, nil)
				continue
			}
			now[pid] = true
		}
		seen = now
	}
}

// zombieChildren lists the pids of zombie processes whose parent is this one.
func zombieChildren() []int {
	me := os.Getpid()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(b[i+1:])
		if len(f) < 2 || string(f[0]) != "Z" {
			continue
		}
		if ppid, _ := strconv.Atoi(string(f[1])); ppid != me {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(s))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
