package schedtrace

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A trace of two processors as the kernel formats it: ip woken by the
// NIC's interrupt on processor 0 waits 300 µs for it, runs 200 µs; httpd
// runs on processor 1 from a wake-up by syscall.
const sample = `# tracer: nop
#
# entries-in-buffer/entries-written: 9/9   #P:2
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
          <idle>-0       [000] d.h1.    10.000000: irq_handler_entry: irq=11 name=uio_pci_generic
          <idle>-0       [000] dNh5.    10.000100: sched_wakeup: comm=nic pid=150 prio=120 target_cpu=000
          <idle>-0       [000] d..2.    10.000200: sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=nic next_pid=150 next_prio=120
             nic-150     [000] d..4.    10.000300: sched_wakeup: comm=ip pid=102 prio=120 target_cpu=000
             nic-150     [000] d..2.    10.000600: sched_switch: prev_comm=nic prev_pid=150 prev_prio=120 prev_state=S ==> next_comm=ip next_pid=102 next_prio=120
              ip-102     [000] d..2.    10.000800: sched_switch: prev_comm=ip prev_pid=102 prev_prio=120 prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120
         syscall-105     [001] d..4.    10.000900: sched_wakeup: comm=httpd pid=108 prio=120 target_cpu=001
          <idle>-0       [001] d..2.    10.001000: sched_switch: prev_comm=swapper/1 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=httpd next_pid=108 next_prio=120
           httpd-108     [001] d..2.    10.001500: sched_switch: prev_comm=httpd prev_pid=108 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
CPU:1 [LOST 3 EVENTS]
`

func TestParseAndSummarize(t *testing.T) {
	events, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 9 {
		t.Fatalf("Parse: %d events, want 9 (the header and the lost-events note skipped)", len(events))
	}
	if e := events[2]; e.Kind != "sched_switch" || e.CPU != 0 || e.Prev.PID != 0 || e.Next != (Task{150, "nic"}) || e.At != 10000200*time.Microsecond {
		t.Errorf("event 2 = %+v", e)
	}
	s := Summarize(events)
	if s.CPUs != 2 || s.Switches != 5 || s.IRQs["uio_pci_generic"] != 1 {
		t.Errorf("summary: %d CPUs, %d switches, interrupts %v; want 2, 5, uio_pci_generic 1", s.CPUs, s.Switches, s.IRQs)
	}
	if s.Span != 1500*time.Microsecond {
		t.Errorf("span %v, want 1.5ms", s.Span)
	}
	// Processor 0 busy from the nic's switch-in to ip's switch-out.
	if s.Busy[0] != 600*time.Microsecond || s.Busy[1] != 500*time.Microsecond {
		t.Errorf("busy %v, want [600µs 500µs]", s.Busy)
	}
	by := map[string]*Program{}
	for _, p := range s.Programs {
		by[p.Comm] = p
	}
	want := map[string]struct {
		runs int
		ran  time.Duration
		wait []time.Duration
	}{
		"nic":   {1, 400 * time.Microsecond, []time.Duration{100 * time.Microsecond}},
		"ip":    {1, 200 * time.Microsecond, []time.Duration{300 * time.Microsecond}},
		"httpd": {1, 500 * time.Microsecond, []time.Duration{100 * time.Microsecond}},
	}
	for comm, w := range want {
		p := by[comm]
		if p == nil {
			t.Errorf("no program %s in %v", comm, s.Programs)
			continue
		}
		if p.Runs != w.runs || p.Ran != w.ran || len(p.Wait) != 1 || p.Wait[0] != w.wait[0] {
			t.Errorf("%s: runs %d, ran %v, waits %v; want %d, %v, %v", comm, p.Runs, p.Ran, p.Wait, w.runs, w.ran, w.wait)
		}
	}
	if s.Programs[0].Comm != "httpd" {
		t.Errorf("programs not by run time: first %s", s.Programs[0].Comm)
	}
	var out bytes.Buffer
	if err := s.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"2 processors", "uio_pci_generic", "httpd", "nic"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("the table lacks %q:\n%s", w, out.String())
		}
	}
}

func TestSummarizeNothing(t *testing.T) {
	var out bytes.Buffer
	Summarize(nil).Write(&out)
	if !strings.Contains(out.String(), "no scheduler events") {
		t.Errorf("an empty trace's table: %q", out.String())
	}
}
