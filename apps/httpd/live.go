package httpd

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// The live status page: GET / is a page that updates itself by polling
// GET /live.json (live.js, embedded with the page: it fetches nothing
// else). /live.json is one view of the appliance: its components with
// their CPU share and memory, its NICs with their rates and a traffic
// history, init's recent events and the components' recent lines.
//
// The history is httpd's own: a sampler asks init for the status every
// SampleEvery, from the first page request on, and keeps HistoryLen
// samples (five minutes); rates are between consecutive samples. A
// restarted httpd starts a new history; the events and lines come from
// init's journal, which outlives it.

// History bounds.
const (
	SampleEvery = 2 * time.Second
	HistoryLen  = 150 // samples: five minutes
	liveEvents  = 60  // the most recent events a view carries
	liveLines   = 60  // the most recent lines a view carries
)

// liveView is /live.json.
type liveView struct {
	Time       time.Time       `json:"time"` // of the last sample
	Ready      bool            `json:"ready"`
	Stack      string          `json:"stack"`
	Waiting    []string        `json:"waiting,omitempty"`
	Error      string          `json:"error,omitempty"` // init did not answer the last sample
	Components []liveComponent `json:"components"`
	NICs       []liveNIC       `json:"nics"`
	Events     []journal.Event `json:"events"`
	Lines      []journal.Line  `json:"lines"`
}

type liveComponent struct {
	Name       string  `json:"name"`
	State      string  `json:"state"`
	Ready      bool    `json:"ready"`
	PID        int     `json:"pid"`
	Generation int     `json:"generation"`
	Restarts   int     `json:"restarts"`
	Hangs      int     `json:"hangs"`
	LastExit   string  `json:"last_exit,omitempty"`
	Uptime     float64 `json:"uptime_s"`
	CPU        float64 `json:"cpu_percent"` // of one CPU, over the last sample interval; -1 unknown
	RSSKiB     int     `json:"rss_kib"`
}

type liveNIC struct {
	ctl.NIC
	RxRate  float64     `json:"rx_bps"` // bytes per second over the last interval; -1 unknown
	TxRate  float64     `json:"tx_bps"`
	History []ratePoint `json:"history"`
}

// ratePoint is a NIC's rates at a time (Unix milliseconds).
type ratePoint struct {
	T  int64   `json:"t"`
	Rx float64 `json:"rx"`
	Tx float64 `json:"tx"`
}

// live is the sampler and what it keeps.
type live struct {
	cfg   Config
	start sync.Once

	// mu guards everything below.
	mu       sync.Mutex
	last     *ctl.Status // the last status; nil before the first
	lastAt   time.Time
	prev     *ctl.Status // the one before it
	prevAt   time.Time
	err      error
	stale    map[string]bool        // components whose stats in last are prev's (carryStats)
	history  map[string][]ratePoint // by NIC
	events   []journal.Event
	lines    []journal.Line
	nextEv   uint64
	nextLine uint64
}

// run samples every Config.SampleEvery, for the process's life.
func (l *live) run() {
	for {
		time.Sleep(l.every())
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		l.sample(ctx, time.Now())
		cancel()
	}
}

func (l *live) every() time.Duration {
	if l.cfg.SampleEvery > 0 {
		return l.cfg.SampleEvery
	}
	return SampleEvery
}

// sample asks init for its status, events and lines, and keeps them as
// taken at now.
func (l *live) sample(ctx context.Context, now time.Time) {
	var st *ctl.Status
	var err error
	if l.cfg.Status == nil {
		err = errNoStatus
	} else if st, err = l.cfg.Status(ctx); err == nil && st == nil {
		err = errNoStatus
	}
	var evs []journal.Event
	var lines []journal.Line
	l.mu.Lock()
	nextEv, nextLine := l.nextEv, l.nextLine
	l.mu.Unlock()
	if l.cfg.Events != nil {
		if e, next, err := l.cfg.Events(ctx, nextEv); err == nil {
			evs, nextEv = e, next
		}
	}
	if l.cfg.Logs != nil {
		if ls, next, err := l.cfg.Logs(ctx, "", nextLine); err == nil {
			lines, nextLine = ls, next
		}
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = lastN(append(l.events, evs...), liveEvents)
	l.lines = lastN(append(l.lines, lines...), liveLines)
	l.nextEv, l.nextLine = nextEv, nextLine
	l.err = err
	if err != nil {
		return
	}
	st, stale := carryStats(st, l.last)
	l.prev, l.prevAt, l.last, l.lastAt = l.last, l.lastAt, st, now
	l.stale = stale
	if l.history == nil {
		l.history = map[string][]ratePoint{}
	}
	if l.prev == nil {
		return
	}
	secs := now.Sub(l.prevAt).Seconds()
	for _, n := range st.NICs() {
		if stale[n.Name] {
			continue
		}
		old, ok := nicOf(l.prev, n.Name)
		rx, tx := rate(old, n, ok, secs)
		if rx < 0 {
			continue // restarted: no rate this time
		}
		l.history[n.Name] = lastN(append(l.history[n.Name], ratePoint{T: now.UnixMilli(), Rx: rx, Tx: tx}), HistoryLen)
	}
}

// view is what /live.json shows now.
func (l *live) view() liveView {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := liveView{Stack: l.cfg.Stack, Time: l.lastAt, Events: slices.Clone(l.events), Lines: slices.Clone(l.lines),
		Components: []liveComponent{}, NICs: []liveNIC{}}
	if v.Events == nil {
		v.Events = []journal.Event{}
	}
	if v.Lines == nil {
		v.Lines = []journal.Line{}
	}
	if l.err != nil {
		v.Error = l.err.Error()
	}
	st := l.last
	if st == nil {
		return v
	}
	v.Ready, v.Waiting = st.Ready, st.Waiting
	if st.Stack != "" {
		v.Stack = st.Stack
	}
	secs := l.lastAt.Sub(l.prevAt).Seconds()
	for _, c := range st.Components {
		lc := liveComponent{Name: c.Name, State: c.State, Ready: c.Ready, PID: c.PID, Generation: c.Generation, Restarts: c.Restarts,
			Hangs: c.Hangs, LastExit: c.LastExit, Uptime: float64(c.UptimeMillis) / 1000, CPU: -1, RSSKiB: c.RSSKiB}
		if l.prev != nil && c.PID != 0 {
			if old, ok := l.prev.Component(c.Name); ok && old.PID == c.PID && secs > 0 {
				lc.CPU = float64(c.CPUMillis-old.CPUMillis) / 10 / secs
			}
		}
		v.Components = append(v.Components, lc)
	}
	for _, n := range st.NICs() {
		ln := liveNIC{NIC: n, RxRate: -1, TxRate: -1, History: slices.Clone(l.history[n.Name])}
		if l.prev != nil && !l.stale[n.Name] {
			old, ok := nicOf(l.prev, n.Name)
			ln.RxRate, ln.TxRate = rate(old, n, ok, secs)
		}
		if ln.History == nil {
			ln.History = []ratePoint{}
		}
		v.NICs = append(v.NICs, ln)
	}
	return v
}

// carryStats fills in the published statistics st lacks from prev, the
// status before: init leaves them out when the store does not answer
// quickly (a busy machine), and the page should not lose its NICs for a
// sample. It returns the status to keep and the components whose
// statistics are carried over (no rate from them).
func carryStats(st, prev *ctl.Status) (*ctl.Status, map[string]bool) {
	if prev == nil {
		return st, nil
	}
	var out *ctl.Status
	stale := map[string]bool{}
	for i, c := range st.Components {
		if len(c.Stats) > 0 {
			continue
		}
		old, ok := prev.Component(c.Name)
		if !ok || len(old.Stats) == 0 {
			continue
		}
		if out == nil {
			cp := *st
			cp.Components = slices.Clone(st.Components)
			out = &cp
		}
		out.Components[i].Stats = old.Stats
		stale[c.Name] = true
	}
	if out == nil {
		return st, nil
	}
	return out, stale
}

// rate is a NIC's receive and transmit rates between two readings secs
// apart; -1 when they are not of one driver process.
func rate(old, now ctl.NIC, ok bool, secs float64) (rx, tx float64) {
	if !ok || secs <= 0 || old.Generation != now.Generation || now.RxBytes < old.RxBytes || now.TxBytes < old.TxBytes {
		return -1, -1
	}
	return float64(now.RxBytes-old.RxBytes) / secs, float64(now.TxBytes-old.TxBytes) / secs
}

func nicOf(st *ctl.Status, name string) (ctl.NIC, bool) {
	for _, n := range st.NICs() {
		if n.Name == name {
			return n, true
		}
	}
	return ctl.NIC{}, false
}

// lastN is the last n elements of s (s itself, trimmed in place).
func lastN[T any](s []T, n int) []T {
	if len(s) <= n {
		return s
	}
	return append(s[:0:0], s[len(s)-n:]...)
}

// serveLive answers GET /live.json, starting the sampler at the first
// request (a first view then has no rates yet; the page asks again).
func (s *server) serveLive(w http.ResponseWriter, r *http.Request) {
	s.startSampler(r.Context())
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.live.view())
}

// startSampler takes a first sample and starts the sampler, once.
func (s *server) startSampler(ctx context.Context) {
	s.live.start.Do(func() {
		ctx, cancel := context.WithTimeout(ctx, statusTimeout)
		defer cancel()
		s.live.sample(ctx, time.Now())
		if !s.cfg.NoSampler {
			go s.live.run()
		}
	})
}
