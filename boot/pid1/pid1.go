// Package pid1 is keepnet's init: the first process of the appliance.
//
// In order, it
//
//  1. mounts /proc, /sys, /dev, /dev/shm, /dev/hugepages, /run and /tmp, and
//     makes the components' directories under /run (runDirs);
//  2. reads its configuration from the kernel command line and, when that
//     names one (keepnet.conf, as the boot images' does), from a
//     configuration file it finds on a disk, USB stick or CD (Parse,
//     conffile.go, esp.go);
//  3. loads the kernel modules it needs, dependencies first (u-root's
//     kmodule over the modules.dep the image builder wrote);
//  4. reserves huge pages for packet pools;
//  5. with keepnet.stack=linux, configures the kernel's own e1000
//     interfaces (the baseline stack: addresses, routes, forwarding, the
//     packet filter's rules in nf_tables) and watches them until they are
//     usable (netconf.go, nftables.go);
//  6. answers the control protocol (package ctl) on the virtio-serial port or
//     vsock the host talks to, and on LocalCtl for components inside (inject
//     arms fault sites from a faulty image's site list: inject.go);
//  7. runs the supervisor over the component table (Table) and reaps
//     orphans, until poweroff; says "keepnet ready" once every component
//     serves and the network is usable (ready.go).
//
// From the start it keeps a journal (package boot/journal, journal.go):
// the supervisor's events, fault injections, the drivers' device resets,
// and the recent lines of every component and of init itself, which the
// control verbs events and logs read.
//
// Init never exits: a PID 1 that exits panics the kernel. Failures are
// printed on the console and the appliance keeps running as far as it can,
// so it can still be reached and inspected over the control channel.
package pid1

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-multierror"
	"golang.org/x/sys/unix"

	"keepnet/boot/ctl"
	"keepnet/boot/hub"
	"keepnet/boot/journal"
	"keepnet/boot/supervisor"
	"keepnet/drivers/nic"
	"keepnet/drivers/pci"
	"keepnet/kernel/profile"
	"keepnet/kernel/sandbox"
	"keepnet/servers/store"
)

// Main is init's whole life.
func Main() {
	// Init's journal (events and the components' recent lines) starts
	// first, so that it holds init's own lines from the start.
	j := journal.New(nil, journalRules...)
	log.SetFlags(0)
	log.SetPrefix("init: ")
	log.SetOutput(io.MultiWriter(os.Stdout, initLines{j}))

	if err := mountAll(); err != nil {
		log.Print(err)
	}
	if err := runDirs(); err != nil {
		log.Print(err)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	cfg, warnings := Parse(readConfFile(string(cmdline)), string(cmdline))
	cfg.IOMMU = pci.HasIOMMU(nic.IOMMUClass)
	cfg.CPUs = runtime.NumCPU()
	for _, w := range warnings {
		log.Print(w)
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			log.Printf("host name %s: %v", cfg.Hostname, err)
		}
	}
	if cfg.DHCP {
		log.Printf("stack %s, address by DHCP, control channel %s", cfg.Stack, cfg.Ctl)
	} else {
		log.Printf("stack %s, address %v, gateway %v, control channel %s", cfg.Stack, cfg.IP, cfg.Gateway, cfg.Ctl)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a := &appliance{cfg: cfg, shutdown: cancel, store: store.Dial(store.DefaultPath), journal: j}
	specs, nodes := Table(cfg)
	wiring, err := hub.New(nodes, hub.Shared(), log.Printf)
	a.faults = newInjector(SiteList, specs)
	a.faults.journal = j
	if err != nil {
		log.Printf("component wiring: %v", err)
	} else {
		a.wiring = wiring
		a.faults.arm = wiring.Arm
		if cfg.PFRules != "" && cfg.Stack == StackKeepnet {
			if a.pf, err = setUpPF(wiring, cfg.PFRules); err != nil {
				log.Printf("pf rules: %v", err) // pf then blocks everything
			}
		}
		for i := range specs {
			if wiring.Wired(specs[i].Name) {
				specs[i].ExtraFiles = wiring.ExtraFiles(specs[i].Name)
				specs[i].Liveness = wiring.Liveness(specs[i].Name)
			}
		}
	}
	sup, err := supervisor.New(supervisor.Config{Specs: specs, Console: os.Stdout, HangAfter: cfg.Hang, Journal: j})
	if err != nil {
		log.Printf("component table: %v", err)
	}
	a.sup = sup
	if sup != nil {
		a.readiness = newReadiness(sup)
	} else {
		a.readiness = newReadiness(nil) // not a nil *Supervisor in an interface
	}
	go reapOrphans(ctx, sup, time.Second)

	// Module loading and the huge page reservation are independent and each
	// takes hundreds of milliseconds under TCG: do them side by side.
	t0 := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, group := range modulesFor(cfg) {
			if err := loadModules(group...); err != nil {
				log.Print(err)
			}
		}
	})
	if cfg.HugePages > 0 {
		wg.Go(func() {
			if got, err := reserveHugePages(cfg.HugePages); err != nil {
				log.Print(err)
			} else if got < cfg.HugePages {
				log.Printf("asked for %d huge pages, got %d", cfg.HugePages, got)
			}
		})
	}
	wg.Wait()
	log.Printf("modules %v and %d huge pages in %v", slices.Concat(modulesFor(cfg)...), cfg.HugePages, time.Since(t0).Round(time.Millisecond))
	if cfg.Stack == StackKeepnet {
		if err := writeResolvConf(cfg); err != nil {
			log.Printf("resolv.conf: %v", err)
		}
	}
	if cfg.Stack == StackLinux {
		a.readiness.set(netCondition, false, "the interfaces are not configured yet")
		t0 := time.Now()
		if names, err := configureLinuxStack(&cfg, 5*time.Second); err != nil {
			log.Printf("linux stack: %v", err)
			a.readiness.set(netCondition, false, err.Error())
		} else {
			log.Printf("linux stack: %s configured in %v%s", strings.Join(names, ", "), time.Since(t0).Round(time.Millisecond), linuxExtras(cfg))
			// Each interface's own condition stands before the
			// general one goes, so that ready never comes in between.
			for _, name := range names {
				a.readiness.set(netCondition+" "+name, false, "not watched yet")
			}
			a.readiness.set(netCondition, true, "")
			for i, name := range names {
				var once sync.Once
				go watchLink(ctx, name, cfg.NICAddr(i), func(met bool, why string) {
					if met {
						once.Do(func() {
							log.Printf("linux stack: %s usable %v after configuring began", name, time.Since(t0).Round(time.Millisecond))
						})
					}
					a.readiness.set(netCondition+" "+name, met, why)
				})
			}
		}
	}
	a.startControl(ctx)
	if err := schedPolicy(cfg.Sched); err != nil {
		log.Printf("scheduling policy %s: %v", cfg.Sched, err)
	}

	if sup == nil {
		<-ctx.Done()
	} else {
		go a.announceReady(ctx)
		if err := sup.Run(ctx); err != nil {
			log.Printf("supervisor: %v", err)
		}
	}
	log.Print("powering off")
	poweroff()
}

// readConfFile is the text of the configuration file the command line
// names, or "" when it names none or the file is not found (said on the
// console: the appliance boots with the command line and the defaults).
func readConfFile(cmdline string) string {
	file := ConfFileOf(cmdline)
	if file == "" || checkConfPath(file) != nil {
		return "" // a bad path is Parse's to report
	}
	t0 := time.Now()
	if err := loadModules(StorageModules...); err != nil {
		log.Print(err)
	}
	text, where, err := findConf(sysDevices{}, file, confSearch, time.Sleep)
	if err != nil {
		log.Print(err)
		return ""
	}
	log.Printf("configuration %s from %s in %v", file, where, time.Since(t0).Round(time.Millisecond))
	return text
}

// schedPolicy gives every thread of init the policy, which the components
// inherit through fork and exec (and init's later threads from the thread
// that makes them).
//
// SCHED_BATCH is the default because of how the components talk: a
// message to a sleeping neighbour wakes it, and under SCHED_OTHER the woken
// process preempts the sender at once, takes the one message, answers, and
// sleeps again: a context switch per message, and with two CPUs for half a
// dozen busy processes the switches dominated. A batch process is not
// preempted by the wake-up; it finishes its round, and the neighbour then
// finds a batch. A sleeping process still runs at once on an idle CPU.
func schedPolicy(policy string) error {
	p := uint32(0) // SCHED_OTHER
	if policy == SchedBatch {
		p = unix.SCHED_BATCH
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	var errs error
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: p}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = multierror.Append(errs, fmt.Errorf("thread %d: %w", tid, err))
		}
	}
	return errs
}

// modulesFor lists the kernel modules a configuration needs, in groups:
// the modules of a group are loaded side by side, the groups one after
// the other.
func modulesFor(cfg Config) [][]string {
	mods := []string{"virtio_pci"}
	switch cfg.Ctl {
	case CtlVirtio:
		mods = append(mods, "virtio_console")
	case CtlVsock:
		mods = append(mods, "vmw_vsock_virtio_transport")
	}
	switch cfg.Stack {
	case StackLinux:
		mods = append(mods, "e1000", "e1000e") // whichever the NIC is
	case StackKeepnet:
		if cfg.IOMMU {
			// vfio_iommu_type1 is what vfio asks modprobe for, which
			// the appliance does not have: named here.
			mods = append(mods, "vfio", "vfio_iommu_type1", "vfio_pci")
		} else {
			mods = append(mods, "uio_pci_generic")
		}
	}
	if cfg.Stack != StackLinux || cfg.PFRules == "" {
		return [][]string{mods}
	}
	// The Linux stack's packet filter (nftables.go): nft_ct brings
	// nf_tables and conntrack. Both need libcrc32c, which asks the crypto
	// API for a crc32c at load time; the kernel would fetch one with
	// /sbin/modprobe, which the appliance does not have (the dependency
	// is only a soft one in modinfo, which the image's modules.dep does
	// not carry): so crc32c_generic comes first.
	return [][]string{append(mods, "crc32c_generic"), {"nft_ct"}}
}

// linuxExtras says what the Linux stack does beyond serving: forwarding
// and filtering, for init's log line.
func linuxExtras(cfg Config) string {
	var s string
	if cfg.Forwarding() {
		s += ", forwarding"
	}
	if cfg.PFRules != "" {
		s += ", the pf rules in nf_tables"
	}
	return s
}

// appliance answers the control protocol for the whole machine.
type appliance struct {
	cfg      Config
	sup      *supervisor.Supervisor // nil when the component table was invalid
	wiring   *hub.Hub               // nil when the wiring was invalid
	faults   *injector              // answers inject
	pf       *pfRules               // nil without a packet filter
	shutdown context.CancelFunc
	store    *store.Client // reads the counters components publish
	journal  *journal.Journal

	readiness *readiness  // what "ready" waits for
	ready     atomic.Bool // set once the appliance was first ready and said so
}

// netCondition is the name of init's readiness condition for the Linux
// stack's interface.
const netCondition = "network"

var _ ctl.Handler = (*appliance)(nil)

func (a *appliance) Status() ctl.Status {
	st := ctl.Status{Stack: a.cfg.Stack, Components: []ctl.Component{}, CPU: cpuTimes()}
	st.Waiting = a.readiness.waiting()
	st.Ready = a.ready.Load() && len(st.Waiting) == 0
	if a.sup == nil {
		return st
	}
	published := a.published()
	for _, c := range a.sup.Status() {
		st.Components = append(st.Components, ctl.Component{
			Name: c.Name, PID: c.PID, State: c.State, Ready: c.Ready, Restarts: c.Restarts,
			Generation: c.Generation, LastExit: c.LastExit, Hangs: c.Hangs, RSSKiB: rssKiB(c.PID), CPUMillis: cpuMillis(c.PID), Switches: switches(c.PID),
			UptimeMillis: uptimeMillis(c.Started), Stats: published[c.Name], Privilege: privilege(c.PID),
			CPUs: allowedCPUs(c.PID), IRQs: deviceInterrupts(published[c.Name]),
		})
	}
	return st
}

func (a *appliance) Kill(name string, sig syscall.Signal) error {
	if a.sup == nil {
		return fmt.Errorf("no supervisor")
	}
	return a.sup.Signal(name, sig)
}

func (a *appliance) Hook(name, hook string) error {
	switch {
	case !a.cfg.TestHooks:
		return errors.New("test hooks are off: boot with keepnet.testhooks=1")
	case a.wiring == nil:
		return errors.New("no component wiring")
	}
	log.Printf("test hook %s requested in %s", hook, name)
	return a.wiring.Hook(name, hook)
}

func (a *appliance) Inject(name string, f ctl.Fault) (ctl.Armed, error) {
	return a.faults.Inject(name, f)
}

// PFLoad puts a new packet filter rule set in force (pf.go).
func (a *appliance) PFLoad(text string) error {
	if a.cfg.Stack == StackLinux && a.cfg.PFRules != "" {
		return errors.New("the Linux stack filters with nftables, loaded from the boot rule set; it is not replaced at run time")
	}
	return a.pf.load(text)
}

func (a *appliance) Restart(name string) error {
	if a.sup == nil {
		return fmt.Errorf("no supervisor")
	}
	return a.sup.Restart(name)
}

// Profile signals the component to start a CPU profile, again after d to
// stop it, and returns the file it wrote (package kernel/profile). A
// component that does not take part, or that is restarted meanwhile,
// writes nothing: the wait for the file times out with an error.
func (a *appliance) Profile(name string, d time.Duration) ([]byte, error) {
	if a.sup == nil {
		return nil, fmt.Errorf("no supervisor")
	}
	pid := 0
	for _, c := range a.sup.Status() {
		if c.Name == name {
			pid = c.PID
		}
	}
	if pid <= 0 {
		return nil, fmt.Errorf("%s is not running", name)
	}
	path := profile.Path(pid)
	os.Remove(path)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	time.Sleep(d)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s wrote no profile (does its main call profile.OnSignal?)", name)
}

// StatsNS is the store namespace where components publish their counters,
// each under its own name, as JSON.
const StatsNS = "stats"

func (a *appliance) Stats(name string) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, ok, err := a.store.Get(ctx, StatsNS, name)
	if err != nil {
		return nil, err
	}
	if !ok || !json.Valid(b) {
		return nil, fmt.Errorf("%s has published no statistics", name)
	}
	return json.RawMessage(b), nil
}

// published is every component's last published counters, by name; empty
// when the store does not answer quickly (status must stay fast).
func (a *appliance) published() map[string]json.RawMessage {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	kvs, err := a.store.List(ctx, StatsNS)
	if err != nil {
		return nil
	}
	m := make(map[string]json.RawMessage, len(kvs))
	for _, kv := range kvs {
		if json.Valid(kv.Value) {
			m[kv.Key] = json.RawMessage(kv.Value)
		}
	}
	return m
}

func (a *appliance) Poweroff() error {
	log.Print("poweroff requested")
	a.shutdown()
	return nil
}

// startControl opens the control channels. Failures are logged: the local
// socket and the host channel are independent.
func (a *appliance) startControl(ctx context.Context) {
	// Components may look, only the host may act.
	if err := serveLocal(ctx, LocalCtl, ctl.ReadOnly(a), log.Printf); err != nil {
		log.Printf("local control socket: %v", err)
	}
	switch a.cfg.Ctl {
	case CtlVsock:
		if err := serveVsock(ctx, a, log.Printf); err != nil {
			log.Print(err)
		}
	default:
		dev, err := findVirtioPort(PortName, 5*time.Second)
		if err != nil {
			log.Printf("control channel: %v", err)
			return
		}
		go serveVirtioPort(ctx, dev, a, log.Printf)
	}
}

// announceReady prints one line the first time the appliance is ready
// (every component serves, the network is usable: readiness), with the
// time since the kernel started; status says ready only from then on.
func (a *appliance) announceReady(ctx context.Context) {
	if a.readiness.wait(ctx) {
		a.ready.Store(true)
		log.Printf("keepnet ready (%s stack) %s after kernel start", a.cfg.Stack, uptime())
	}
}

// privilege is what a running process may do, or nil when it is not
// running.
func privilege(pid int) *ctl.Privilege {
	if pid <= 0 {
		return nil
	}
	p, err := sandbox.ReadProc(pid)
	if err != nil {
		return nil
	}
	return &ctl.Privilege{UID: p.UID, CapEff: fmt.Sprintf("%016x", p.CapEff),
		Seccomp: p.Seccomp == sandbox.SeccompFilter, NoNewPrivs: p.NoNewPrivs}
}

// rssKiB is a process's resident set size, or 0 when it is not running.
func rssKiB(pid int) int {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.Atoi(f[1])
	return pages * os.Getpagesize() / 1024
}

// cpuMillis is the user and system time a process has used, or 0 when it
// is not running: fields 14 and 15 of /proc/PID/stat, in clock ticks,
// counted after the command name, which may itself hold spaces.
func cpuMillis(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return (utime + stime) * 1000 / ticksPerSecond
}

// switches sums the context switches of a process's threads, or is nil
// when it is not running: the voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches lines of /proc/PID/task/TID/status. A thread
// that exits between the listing and the read is left out.
func switches(pid int) *ctl.Switches {
	if pid <= 0 {
		return nil
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var sw ctl.Switches
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		addSwitches(&sw, string(b))
	}
	return &sw
}

// addSwitches adds the context switches a thread's status file counts.
func addSwitches(sw *ctl.Switches, status string) {
	for _, line := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "voluntary_ctxt_switches":
			sw.Voluntary += n
		case "nonvoluntary_ctxt_switches":
			sw.Involuntary += n
		}
	}
}

// cpuTimes reads the machine's processor time from /proc/stat; nil if it
// cannot (status then leaves it out: it is asked for every second, too
// often to log why).
func cpuTimes() *ctl.CPUTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	t, err := parseStat(string(b))
	if err != nil {
		return nil
	}
	return &t
}

// parseStat reads /proc/stat's text: its "cpu" line (user nice system idle
// iowait irq softirq steal, in clock ticks summed over the CPUs), a
// "cpuN" line per CPU and the "ctxt" line (context switches since boot).
func parseStat(text string) (ctl.CPUTimes, error) {
	var t ctl.CPUTimes
	var sawCPU, sawCtxt bool
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "ctxt":
			if len(f) != 2 {
				return t, fmt.Errorf("ctxt line %q", line)
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return t, fmt.Errorf("ctxt line %q: %v", line, err)
			}
			t.Ctxt, sawCtxt = n, true
		case f[0] == "cpu":
			if len(f) < 9 {
				return t, fmt.Errorf("cpu line %q: fewer than 8 times", line)
			}
			var v [8]int64
			for i := range v {
				n, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					return t, fmt.Errorf("cpu line %q: %v", line, err)
				}
				v[i] = n * 1000 / ticksPerSecond
			}
			t.User, t.System, t.Idle, t.IRQ, t.Stolen = v[0]+v[1], v[2], v[3]+v[4], v[5]+v[6], v[7]
			sawCPU = true
		case strings.HasPrefix(f[0], "cpu"):
			t.NumCPUs++
		}
	}
	if !sawCPU || !sawCtxt {
		return t, errors.New("no cpu or no ctxt line")
	}
	return t, nil
}

// ticksPerSecond is USER_HZ, the unit of /proc's CPU times: 100 on x86.
const ticksPerSecond = 100

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}
