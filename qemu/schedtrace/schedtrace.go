// Package schedtrace reads the text of a Linux scheduler trace (tracefs's
// sched_switch, sched_wakeup and irq_handler_entry, as `keepnet trace`
// records them in the appliance) and sums it up per program: how often
// each ran, for how long, and how long it waited for a processor once
// woken. Under TCG a process switch empties the emulator's TLB, so these
// are the figures that say what a request's trip through five processes
// costs.
package schedtrace

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Event is one line of the trace.
type Event struct {
	CPU  int
	At   time.Duration // the trace clock's reading
	Kind string        // sched_switch, sched_wakeup, irq_handler_entry
	// sched_switch: from Prev to Next; sched_wakeup: Next is the woken
	// task, Target its processor; irq_handler_entry: Next.Comm is the
	// handler's name.
	Prev, Next Task
	Target     int
}

// Task is a thread, by its pid and program name (the kernel's comm).
type Task struct {
	PID  int
	Comm string
}

// Parse reads the events of a trace's text; lines that are not events
// (the header, lost-event notes) are skipped.
func Parse(r io.Reader) ([]Event, error) {
	var events []Event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, ok := parseLine(sc.Text()); ok {
			events = append(events, e)
		}
	}
	return events, sc.Err()
}

// parseLine reads one event line:
//
//	<idle>-0  [001] d..2.  86.102030: sched_switch: prev_comm=swapper/1 prev_pid=0 ... ==> next_comm=ip next_pid=102 next_prio=120
func parseLine(line string) (Event, bool) {
	open := strings.Index(line, "[")
	if open < 0 || strings.HasPrefix(strings.TrimSpace(line), "#") {
		return Event{}, false
	}
	end := strings.Index(line[open:], "]")
	if end < 0 {
		return Event{}, false
	}
	cpu, err := strconv.Atoi(line[open+1 : open+end])
	if err != nil {
		return Event{}, false
	}
	rest := line[open+end+1:]
	colon := strings.Index(rest, ": ")
	if colon < 0 {
		return Event{}, false
	}
	fields := strings.Fields(rest[:colon])
	if len(fields) == 0 {
		return Event{}, false
	}
	secs, err := strconv.ParseFloat(fields[len(fields)-1], 64)
	if err != nil {
		return Event{}, false
	}
	rest = rest[colon+2:]
	colon = strings.Index(rest, ": ")
	if colon < 0 {
		return Event{}, false
	}
	e := Event{CPU: cpu, At: time.Duration(secs * 1e9), Kind: rest[:colon]}
	kv := keyValues(rest[colon+2:])
	switch e.Kind {
	case "sched_switch":
		e.Prev = Task{atoi(kv["prev_pid"]), kv["prev_comm"]}
		e.Next = Task{atoi(kv["next_pid"]), kv["next_comm"]}
	case "sched_wakeup":
		e.Next = Task{atoi(kv["pid"]), kv["comm"]}
		e.Target = atoi(kv["target_cpu"])
	case "irq_handler_entry":
		e.Next = Task{Comm: kv["name"]}
	default:
		return Event{}, false
	}
	return e, true
}

// keyValues splits "a=1 b=x ==> c=2" into its pairs. A comm may hold
// spaces only in theory: keepnet's do not.
func keyValues(s string) map[string]string {
	kv := make(map[string]string, 8)
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// Program is what a program's threads did over the trace.
type Program struct {
	Comm string
	Runs int           // times one of its threads was switched in
	Ran  time.Duration // their time on a processor
	// Woken is how many wake-ups it got; Wait their waits from the
	// wake-up to the switch-in that followed it.
	Woken int
	Wait  []time.Duration
	// Threads is how many of its threads ran.
	Threads int
}

// Summary is a trace summed up.
type Summary struct {
	Span     time.Duration // from the first event to the last
	CPUs     int
	Switches int
	Busy     []time.Duration // per processor: time not in the idle task
	IRQs     map[string]int  // interrupts by handler name
	Programs []*Program      // most run time first
}

// Summarize sums events up. Time a task ran before the first event on its
// processor is not counted.
func Summarize(events []Event) Summary {
	var s Summary
	s.IRQs = map[string]int{}
	if len(events) == 0 {
		return s
	}
	events = slices.Clone(events)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	s.Span = events[len(events)-1].At - events[0].At
	progs := map[string]*Program{}
	threads := map[string]map[int]bool{}
	prog := func(comm string) *Program {
		p := progs[comm]
		if p == nil {
			p = &Program{Comm: comm}
			progs[comm] = p
			threads[comm] = map[int]bool{}
		}
		return p
	}
	type running struct {
		task  Task
		since time.Duration
	}
	cpus := map[int]running{}        // what each processor ran since its last switch seen
	woken := map[int]time.Duration{} // pid → when its pending wake-up came
	for _, e := range events {
		if e.CPU+1 > s.CPUs {
			s.CPUs = e.CPU + 1
			s.Busy = append(s.Busy, make([]time.Duration, s.CPUs-len(s.Busy))...)
		}
		switch e.Kind {
		case "irq_handler_entry":
			s.IRQs[e.Next.Comm]++
		case "sched_wakeup":
			if e.Next.PID == 0 {
				continue
			}
			prog(e.Next.Comm).Woken++
			if _, pending := woken[e.Next.PID]; !pending {
				woken[e.Next.PID] = e.At
			}
		case "sched_switch":
			s.Switches++
			if r, ok := cpus[e.CPU]; ok && r.task.PID != 0 {
				prog(r.task.Comm).Ran += e.At - r.since
				s.Busy[e.CPU] += e.At - r.since // not the idle task
			}
			cpus[e.CPU] = running{task: e.Next, since: e.At}
			if e.Next.PID == 0 {
				continue
			}
			p := prog(e.Next.Comm)
			p.Runs++
			threads[e.Next.Comm][e.Next.PID] = true
			if at, ok := woken[e.Next.PID]; ok {
				p.Wait = append(p.Wait, e.At-at)
				delete(woken, e.Next.PID)
			}
		}
	}
	for comm, p := range progs {
		p.Threads = len(threads[comm])
		slices.Sort(p.Wait)
		s.Programs = append(s.Programs, p)
	}
	sort.Slice(s.Programs, func(i, j int) bool {
		if s.Programs[i].Ran != s.Programs[j].Ran {
			return s.Programs[i].Ran > s.Programs[j].Ran
		}
		return s.Programs[i].Comm < s.Programs[j].Comm
	})
	return s
}

// quantile is the q-quantile of sorted d, zero if d is empty.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// Write prints s as a table.
func (s Summary) Write(w io.Writer) error {
	secs := s.Span.Seconds()
	if secs <= 0 {
		_, err := fmt.Fprintln(w, "no scheduler events")
		return err
	}
	fmt.Fprintf(w, "%.3f s, %d processors, %.0f switches/s", secs, s.CPUs, float64(s.Switches)/secs)
	for cpu, b := range s.Busy {
		fmt.Fprintf(w, ", cpu%d %.0f%% busy", cpu, 100*b.Seconds()/secs)
	}
	fmt.Fprintln(w)
	var irqs []string
	for name, n := range s.IRQs {
		irqs = append(irqs, fmt.Sprintf("%s %.0f/s", name, float64(n)/secs))
	}
	sort.Strings(irqs)
	if len(irqs) > 0 {
		fmt.Fprintf(w, "interrupts: %s\n", strings.Join(irqs, ", "))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "PROGRAM\tTHREADS\tRUNS/s\tCPU ms/s\tµs/RUN\tWOKEN/s\tWAIT µs p50\tp90\tmax\t")
	for _, p := range s.Programs {
		per := time.Duration(0)
		if p.Runs > 0 {
			per = p.Ran / time.Duration(p.Runs)
		}
		maxWait := time.Duration(0)
		if len(p.Wait) > 0 {
			maxWait = p.Wait[len(p.Wait)-1]
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.1f\t%d\t%.0f\t%d\t%d\t%d\t\n", p.Comm, p.Threads,
			float64(p.Runs)/secs, float64(p.Ran.Microseconds())/1e3/secs, per.Microseconds(),
			float64(p.Woken)/secs, quantile(p.Wait, 0.5).Microseconds(), quantile(p.Wait, 0.9).Microseconds(), maxWait.Microseconds())
	}
	return tw.Flush()
}
