package campaign

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Timeline is the workload's history as the campaign reads it from the
// worker: every tick's counters and every incident (a wrong byte, a broken
// connection), in the order they came. A run asks it what happened between
// two instants. It is safe for concurrent use: Read fills it while the
// campaign asks.
type Timeline struct {
	mu        sync.Mutex
	ticks     []Event       // Kind tick, Counters set, in time order
	incidents []Event       // corrupt, broken, error
	changed   chan struct{} // closed and replaced at every event
	// OnError, if set before Read, gets every error event at once: a
	// stream that cannot run at all is the campaign's problem, not a run's.
	OnError func(Event)
}

// NewTimeline returns an empty timeline.
func NewTimeline() *Timeline { return &Timeline{changed: make(chan struct{})} }

// Read adds the events the worker writes on r until r ends.
func (tl *Timeline) Read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue // not an event: a stray line
		}
		tl.Add(e)
	}
	return sc.Err()
}

// Add records one event.
func (tl *Timeline) Add(e Event) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if e.Kind == EventTick {
		if e.Counters != nil {
			tl.ticks = append(tl.ticks, e)
		}
	} else {
		tl.incidents = append(tl.incidents, e)
	}
	if e.Kind == EventError && tl.OnError != nil {
		tl.OnError(e)
	}
	close(tl.changed)
	tl.changed = make(chan struct{})
}

// Changed is closed at the next event.
func (tl *Timeline) Changed() <-chan struct{} {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.changed
}

// At is the counters of the last tick at or before t (zero before the
// first).
func (tl *Timeline) At(t time.Time) Counters {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	i := tl.indexAfter(t)
	if i == 0 {
		return Counters{}
	}
	return *tl.ticks[i-1].Counters
}

// Latest is the time and counters of the last tick.
func (tl *Timeline) Latest() (time.Time, Counters) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if len(tl.ticks) == 0 {
		return time.Time{}, Counters{}
	}
	last := tl.ticks[len(tl.ticks)-1]
	return last.At(), *last.Counters
}

// indexAfter is the index of the first tick after t. Ticks come in time
// order, so the search runs from the end, where a run's questions are.
func (tl *Timeline) indexAfter(t time.Time) int {
	ms := t.UnixMilli()
	i := len(tl.ticks)
	for i > 0 && tl.ticks[i-1].Time > ms {
		i--
	}
	return i
}

// FirstGrowth is the first tick after since at which field grew beyond
// its value at since; false if it has not (yet).
func (tl *Timeline) FirstGrowth(since time.Time, field func(Counters) int64) (time.Time, bool) {
	base := field(tl.At(since))
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, e := range tl.ticks[tl.indexAfter(since):] {
		if field(*e.Counters) > base {
			return e.At(), true
		}
	}
	return time.Time{}, false
}

// Incidents are the incidents from from to to, inclusive.
func (tl *Timeline) Incidents(from, to time.Time) []Event {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var out []Event
	for _, e := range tl.incidents {
		if e.Time >= from.UnixMilli() && e.Time <= to.UnixMilli() {
			out = append(out, e)
		}
	}
	return out
}

// Rate is the download's throughput from from to to, in Mbit/s.
func (tl *Timeline) Rate(from, to time.Time) float64 {
	secs := to.Sub(from).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(tl.At(to).DownBytes-tl.At(from).DownBytes) * 8 / 1e6 / secs
}

// Throughput is the download's throughput over time, one point per period
// from the first tick to the last: seconds since start, Mbit/s.
func (tl *Timeline) Throughput(start time.Time, period time.Duration) (secs, mbps []float64) {
	tl.mu.Lock()
	if len(tl.ticks) == 0 {
		tl.mu.Unlock()
		return nil, nil
	}
	first, last := tl.ticks[0].At(), tl.ticks[len(tl.ticks)-1].At()
	tl.mu.Unlock()
	for t := first; t.Add(period).Before(last) || t.Add(period).Equal(last); t = t.Add(period) {
		secs = append(secs, t.Add(period/2).Sub(start).Seconds())
		mbps = append(mbps, tl.Rate(t, t.Add(period)))
	}
	return secs, mbps
}
