// Package ctl is the control protocol between the host and the appliance's
// init: one JSON object per line in each direction, over a virtio-serial port,
// a vsock stream or a Unix socket inside the guest.
//
// A request names a verb; exactly one response comes back carrying the
// request's id. The transport may be shared by successive host clients (a
// virtio-serial port is one byte stream for the guest's whole life), so a
// client discards any response whose id is not the one it waits for: a late
// answer to an earlier, abandoned client can never be mistaken for its own.
//
// Verbs:
//
//	status          the supervisor's view of every component
//	kill NAME       SIGKILL the component; the supervisor restarts it. With
//	                Signal (e.g. "STOP") that signal instead: a stopped
//	                component is found hung and restarted
//	restart NAME    stop the component gracefully and start it again
//	stats NAME      the counters the component last published (in the store)
//	profile NAME    a CPU profile of the component over Seconds (default 5);
//	                the control channel answers nothing else meanwhile
//	poweroff        stop every component and power the machine off
//	hook NAME       run the test hook Hook in the component (kernel/wiring:
//	                spin, deadlock, the driver's stop-tx...); refused unless
//	                the appliance booted with keepnet.testhooks=1
//	inject NAME     arm a fault site in the component's running process
//	                (Fault: the site by id, or one of Type chosen from Seed;
//	                it fires on the After-th hit or with probability Prob on
//	                each), or disarm it (Disarm); answered with the site
//	                armed (Armed). Only a faulty image (make image FAULTS=1)
//	                has sites; a normal one refuses. Killing or stopping a
//	                component, the faults that need no faulty image, are
//	                kill's
//	events          init's journal of events (boot/journal): starts,
//	                exits, crashes, hangs, restarts with their reasons,
//	                readiness with the recovery time, device resets, fault
//	                injections; from the event numbered Since on, as many as
//	                fit in one response, and Next, the number to ask from
//	                next time
//	logs [NAME]     the last lines the component NAME printed (every
//	                component's, merged, without NAME), kept by init with
//	                their time; from the line numbered Since on, and Next.
//	                A follower (keepnet logs -f) asks again from Next: it
//	                never holds the channel while it waits
//	pf-load         parse Rules as a packet filter rule set (servers/pf)
//	                and put it in force; a text the parser refuses is
//	                answered with its line and column, and the rules in
//	                force stay. The rules with their counters, and the
//	                states, are pf's published statistics (stats pf)
package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"keepnet/boot/journal"
)

// Verbs understood by the guest.
const (
	VerbStatus   = "status"
	VerbKill     = "kill"
	VerbRestart  = "restart"
	VerbPoweroff = "poweroff"
	VerbStats    = "stats"
	VerbProfile  = "profile"
	VerbHook     = "hook"
	VerbInject   = "inject"
	VerbPFLoad   = "pf-load"
	VerbEvents   = "events"
	VerbLogs     = "logs"
	VerbTrace    = "trace"
)

// MaxLine bounds one encoded request or response; longer lines are rejected
// rather than buffered without limit.
const MaxLine = 1 << 20

// Request is one line from the host.
type Request struct {
	ID   uint64 `json:"id"`
	Verb string `json:"verb"`
	Name string `json:"name,omitempty"`
	// Seconds is how long a profile or a trace runs.
	Seconds int `json:"seconds,omitempty"`
	// Syscalls: a trace records every system call's entry too.
	Syscalls bool `json:"syscalls,omitempty"`
	// Signal is the signal kill sends, by name ("STOP", "SIGCONT") or
	// number; empty means KILL.
	Signal string `json:"signal,omitempty"`
	// Hook is the test hook that hook runs.
	Hook string `json:"hook,omitempty"`
	// Fault is what inject arms (its fields are the request's own in
	// JSON).
	Fault
	// Rules is the rule text pf-load loads.
	Rules string `json:"rules,omitempty"`
	// Since is the number of the first event or line events and logs
	// return (Response.Next of the previous call; 0 for all kept).
	Since uint64 `json:"since,omitempty"`
}

// Fault is the fault site inject arms in a component, and when it fires
// (kernel/fault.ArmSeeded).
type Fault struct {
	// Site is the site's id in the image's site list; 0 with Type: any
	// site of that type the component links.
	Site uint32 `json:"site,omitempty"`
	// Type is a fault type (kernel/fault/sitelist: panic, cond, drop...);
	// with Site, the site must be of that type.
	Type string `json:"type,omitempty"`
	// After fires the fault on the site's After-th hit; Prob on each hit
	// with that probability instead. Neither: the first hit.
	After uint64  `json:"after,omitempty"`
	Prob  float64 `json:"prob,omitempty"`
	// Seed chooses the site of Type and seeds the probability draws, so
	// an injection replays exactly.
	Seed uint64 `json:"seed,omitempty"`
	// Disarm disarms the component's armed site instead (no other field).
	Disarm bool `json:"disarm,omitempty"`
}

// MaxProfileSeconds bounds a profile: the control channel is busy meanwhile.
const MaxProfileSeconds = 60

// MaxTraceSeconds bounds a scheduler trace; MaxTraceBytes is the most
// its gzipped text may be, so that the response (base64 in JSON) stays
// within MaxLine.
const (
	MaxTraceSeconds = 10
	MaxTraceBytes   = 600 << 10
)

// Response is the single answer to a Request with the same ID.
type Response struct {
	ID     uint64  `json:"id"`
	OK     bool    `json:"ok"`
	Error  string  `json:"error,omitempty"`
	Status *Status `json:"status,omitempty"`
	// Stats is a component's published counters, as it wrote them.
	Stats json.RawMessage `json:"stats,omitempty"`
	// Profile is a pprof CPU profile (go tool pprof reads it).
	Profile []byte `json:"profile,omitempty"`
	// Trace is the kernel's text of a scheduler trace, gzipped.
	Trace []byte `json:"trace,omitempty"`
	// Armed is the fault site inject armed (or disarmed).
	Armed *Armed `json:"armed,omitempty"`
	// Events and Lines answer events and logs, oldest first; Next is the
	// Since of the call that continues after them.
	Events []journal.Event `json:"events,omitempty"`
	Lines  []journal.Line  `json:"lines,omitempty"`
	Next   uint64          `json:"next,omitempty"`
}

// ReplyBudget is about how many bytes of events or lines one response
// carries: JSON's escapes may grow text sixfold, and a response must stay
// within MaxLine.
const ReplyBudget = MaxLine / 8

// Armed is what inject did: which site it armed in which process.
type Armed struct {
	Component string `json:"component"`
	// Generation is the component's process that was armed: the arming
	// lasts as long as it does, and a restart starts disarmed.
	Generation int    `json:"generation"`
	Site       uint32 `json:"site"` // 0: disarmed
	Type       string `json:"type,omitempty"`
	Variant    string `json:"variant,omitempty"` // operand: plus-one...; wrong-buffer: other-pool...
	File       string `json:"file,omitempty"`    // relative to the module root
	Line       int    `json:"line,omitempty"`
	Func       string `json:"func,omitempty"`
	// After, Prob and Seed are the trigger as sent.
	After uint64  `json:"after,omitempty"`
	Prob  float64 `json:"prob,omitempty"`
	Seed  uint64  `json:"seed,omitempty"`
}

// Status is the appliance's state as `keepnet status` prints it.
type Status struct {
	// Ready: every component serves and the network is usable, so a
	// connection made now succeeds (boot/pid1's readiness).
	Ready bool `json:"ready"`
	// Waiting says what Ready waits for, one line each ("httpd: running,
	// not ready yet"); empty once ready.
	Waiting    []string    `json:"waiting,omitempty"`
	Stack      string      `json:"stack"`
	Components []Component `json:"components"`
	// CPU is the machine's processor time so far, from /proc/stat: a
	// benchmark compares two readings to see whether the guest was busy.
	CPU *CPUTimes `json:"cpu,omitempty"`
}

// CPUTimes are milliseconds of processor time, summed over the CPUs, and
// the machine's context switches.
type CPUTimes struct {
	User    int64 `json:"user_ms"` // including nice
	System  int64 `json:"system_ms"`
	IRQ     int64 `json:"irq_ms"`  // hard and soft interrupts
	Idle    int64 `json:"idle_ms"` // including I/O wait
	Stolen  int64 `json:"steal_ms"`
	NumCPUs int   `json:"cpus"`
	// Ctxt is how many times any CPU switched from one thread to another
	// since boot, kernel threads and the idle task included (/proc/stat's
	// ctxt). A benchmark compares it between the stacks: Linux's network
	// path runs in interrupts and the calling thread, not in components
	// whose Switches could show it.
	Ctxt int64 `json:"ctxt"`
}

// Component is one supervised process.
type Component struct {
	Name       string `json:"name"`
	PID        int    `json:"pid"`
	State      string `json:"state"`
	Ready      bool   `json:"ready"` // its current process said it serves
	Restarts   int    `json:"restarts"`
	Generation int    `json:"generation"`
	LastExit   string `json:"last_exit,omitempty"`
	// Hangs counts the processes killed because they hung (their loop
	// stopped answering: boot/supervisor's hang detection).
	Hangs int `json:"hangs"`
	// RSSKiB is the resident memory of the running process, so a test
	// or an operator can see that a component's memory stays flat.
	RSSKiB int `json:"rss_kib,omitempty"`
	// CPUMillis is the processor time (user and system) the running
	// process has used, so a benchmark can see where the cycles go.
	CPUMillis int64 `json:"cpu_ms,omitempty"`
	// Switches is how many times the running process's threads gave up
	// their CPU: voluntarily (they slept: a wait for a message or an
	// interrupt) and otherwise (preempted). A multiserver stack pays for
	// each: under TCG a switch is a system call, a scheduling and a cold
	// translation cache for the next process, so a bench divides them by
	// the bytes moved.
	Switches *Switches `json:"ctxsw,omitempty"`
	// UptimeMillis is how long the running process has run.
	UptimeMillis int64 `json:"uptime_ms,omitempty"`
	// Stats is what the component last published (keepnet stats NAME),
	// when it publishes anything.
	Stats json.RawMessage `json:"stats,omitempty"`
	// Privilege is what /proc/PID/status says the running process may
	// do; absent when no process runs.
	Privilege *Privilege `json:"privilege,omitempty"`
	// CPUs are the processors the running process may run on, as the
	// kernel lists them ("0", "1-3"; boot/pid1's "Processors").
	CPUs string `json:"cpus,omitempty"`
	// IRQs is, for a driver, how many interrupts of its device each
	// processor has taken since boot (/proc/interrupts).
	IRQs []int64 `json:"irqs,omitempty"`
}

// Switches are a process's context switches, summed over its threads.
type Switches struct {
	Voluntary   int64 `json:"voluntary"`
	Involuntary int64 `json:"involuntary"`
}

// Privilege is a process's identity and confinement (kernel/sandbox).
type Privilege struct {
	UID uint32 `json:"uid"`
	// CapEff is the effective capability set as /proc/PID/status shows
	// it: 16 hex digits, a bit per CAP_* number; all zeros for none.
	CapEff     string `json:"cap_eff"`
	Seccomp    bool   `json:"seccomp"` // a seccomp filter is installed
	NoNewPrivs bool   `json:"no_new_privs"`
}

// Component returns the named component, or false.
func (s Status) Component(name string) (Component, bool) {
	for _, c := range s.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// ErrMalformed is returned for a line that is not a valid request.
var ErrMalformed = errors.New("malformed request")

// ParseRequest decodes and checks one request line.
func ParseRequest(line []byte) (Request, error) {
	var r Request
	if err := json.Unmarshal(line, &r); err != nil {
		return Request{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch r.Verb {
	case VerbStatus, VerbPoweroff, VerbPFLoad, VerbEvents, VerbLogs:
	case VerbTrace:
		if r.Seconds < 0 || r.Seconds > MaxTraceSeconds {
			return r, fmt.Errorf("%w: a trace lasts 1 to %d seconds", ErrMalformed, MaxTraceSeconds)
		}
	case VerbKill, VerbRestart, VerbStats, VerbProfile, VerbHook, VerbInject:
		if r.Seconds < 0 || r.Seconds > MaxProfileSeconds {
			return r, fmt.Errorf("%w: a profile lasts 1 to %d seconds", ErrMalformed, MaxProfileSeconds)
		}
		if r.Name == "" {
			return r, fmt.Errorf("%w: %s needs a component name", ErrMalformed, r.Verb)
		}
		if _, err := ParseSignal(r.Signal); err != nil {
			return r, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		if r.Verb == VerbHook && r.Hook == "" {
			return r, fmt.Errorf("%w: hook needs the hook's name", ErrMalformed)
		}
		if r.Verb == VerbInject {
			if err := r.Fault.check(); err != nil {
				return r, fmt.Errorf("%w: inject: %v", ErrMalformed, err)
			}
		}
	case "":
		return r, fmt.Errorf("%w: no verb", ErrMalformed)
	default:
		return r, fmt.Errorf("%w: unknown verb %q", ErrMalformed, r.Verb)
	}
	return r, nil
}

// check says what is wrong with an inject request's fault, if anything.
func (f Fault) check() error {
	switch {
	case f.Disarm:
		if f != (Fault{Disarm: true}) {
			return errors.New("disarm takes no site, type or trigger")
		}
	case f.Site == 0 && f.Type == "":
		return errors.New("a site or a fault type is needed")
	case f.After != 0 && f.Prob != 0:
		return errors.New("after or prob, not both")
	case !(f.Prob >= 0 && f.Prob <= 1): // NaN too
		return fmt.Errorf("prob %g is not a probability", f.Prob)
	}
	return nil
}

// ParseSignal reads a signal as kill(1) does: a name with or without SIG
// ("STOP", "sigcont"), or a number; empty is SIGKILL.
func ParseSignal(s string) (syscall.Signal, error) {
	if s == "" {
		return syscall.SIGKILL, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
