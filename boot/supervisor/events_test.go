package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"keepnet/boot/journal"
)

// events is the journal's events as "component generation kind reason |
// action | recovery" lines.
func events(j *journal.Journal) []string {
	evs, _ := j.Events(0, 1<<20)
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %d %s %s | %s | %v", e.Component, e.Generation, e.Kind, e.Reason, e.Action, e.RecoveryTime()))
	}
	return out
}

// TestJournal follows a component through a kill and a hang on a fake
// clock: the journal has each start, the signal, the crash, the hang, the
// restarts with their reasons and each recovery with the time from the
// end of the old process to the new one's readiness; and its lines.
//
// Not parallel: TestIdentity execs a copy of the test binary, which a
// concurrent fork can hold open for writing (ETXTBSY).
func TestJournal(t *testing.T) {
	const hangAfter = 2 * time.Second
	clock := newFakeClock()
	j := journal.New(clock.Now)
	var readies readyFuncs
	var alives aliveFuncs
	a := fakeSpec(t, "a", "hang")
	a.Ready, a.ExtraFiles, a.Liveness = ReadyNotify, readies.hook, alives.hook
	h := run(t, Config{Specs: []Spec{a}, Clock: clock, Journal: j, HangAfter: hangAfter})
	h.waitRunning("a", 1)
	readies.of(t, 1)()

	if err := h.sup.Kill("a"); err != nil {
		t.Fatalf("Kill(a) = %v", err)
	}
	h.waitRunning("a", 2)
	clock.advance(300 * time.Millisecond)
	readies.of(t, 2)()

	alives.of(t, 2)()    // watched from now on
	clock.next(t).fire() // silent for HangAfter: hung
	clock.next(t).fire() // a second crash within StableAfter: back-off
	h.waitRunning("a", 3)
	clock.advance(time.Second)
	readies.of(t, 3)()
	h.stop()

	want := []string{
		"a 1 start  |  | 0s",
		"a 1 ready  |  | 0s",
		"a 1 signal SIGKILL requested |  | 0s",
		"a 1 crash signal: killed | restarting | 0s",
		"a 2 restart signal: killed |  | 0s",
		"a 2 ready after signal: killed |  | 300ms",
		"a 2 hang hung (no answer for 2s) | restarting in 100ms (repeated crash) | 0s",
		"a 3 restart hung (no answer for 2s) |  | 0s",
		"a 3 ready after hung (no answer for 2s) |  | 1.1s",
		"a 3 stop signal: terminated | stopped (the appliance stops) | 0s",
	}
	if diff := cmp.Diff(want, events(j)); diff != "" {
		t.Errorf("journal (-want +got):\n%s\nconsole:\n%s", diff, h.con)
	}
	lines, _ := j.Lines("supervisor", 0, 1<<20)
	if len(lines) == 0 || lines[0].Text != "starting a" {
		t.Errorf("journal's supervisor lines = %v, want the console's, from \"starting a\"", lines)
	}
}

// An exit's event says the status with its meaning (kernel/exitcode) and
// what follows it.
func TestJournalExits(t *testing.T) { // not parallel: see TestJournal
	clock := newFakeClock()
	j := journal.New(clock.Now)
	done := fakeSpec(t, "done", "exit0")
	done.Restart = Never
	h := run(t, Config{Specs: []Spec{fakeSpec(t, "broken", "broken"), done}, Clock: clock, Journal: j})
	clock.next(t) // broken's second exit waits for its back-off
	h.waitFor("done", "stopped", func(st State) bool { return st.State == StateStopped })
	var got []string
	for _, e := range events(j) {
		if kind := strings.Fields(e)[2]; kind == "crash" || kind == "exit" {
			got = append(got, e)
		}
	}
	slices.Sort(got)
	want := []string{
		"broken 1 crash exit status 3 (broken channel) | restarting | 0s",
		"broken 2 crash exit status 3 (broken channel) | restarting in 100ms (repeated crash) | 0s",
		"done 1 exit exit status 0 | left stopped (restart policy never) | 0s",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exit events (-want +got):\n%s", diff)
	}
}
