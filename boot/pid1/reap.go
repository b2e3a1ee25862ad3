package pid1

import (
	"bytes"
	"context"
	"os"
	"os/signal"
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
// for zombies whose parent is init (at start, on SIGCHLD, and every
// safetyEvery), and reaps one only when it was already a zombie at the
// previous scan and the supervisor does not own it. A child the supervisor
// just forked but has not yet recorded is therefore never taken: its own
// Wait collects it long before a second scan, which comes `every` after a
// scan that found a candidate. An appliance where nothing dies scans no
// more than every safetyEvery: a scan reads every process's stat file, and
// under TCG a scan a second was most of init's idle CPU.
func reapOrphans(ctx context.Context, o owner, every time.Duration) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	safety := time.NewTicker(safetyEvery)
	defer safety.Stop()
	recheck := time.NewTimer(every)
	defer recheck.Stop()
	seen := map[int]bool{}
	for {
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
		if len(now) > 0 {
			recheck.Reset(every)
		}
		select {
		case <-ctx.Done():
			return
		case <-sigs:
			time.Sleep(50 * time.Millisecond) // let the supervisor's Wait go first
		case <-recheck.C:
		case <-safety.C:
		}
	}
}

// safetyEvery is how often reapOrphans scans with no SIGCHLD: a zombie
// whose signal was merged into an earlier one's still goes.
const safetyEvery = 30 * time.Second

// zombieChildren lists the pids of zombie processes whose parent is this one.
func zombieChildren() []int {
	me := os.Getpid()
	dir, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range dir {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
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
		if ppid, _ := strconv.Atoi(string(f[1])); ppid == me {
			pids = append(pids, pid)
		}
	}
	return pids
}
