// Package metrics is httpd's GET /metrics: the appliance in Prometheus'
// text exposition format, for a Prometheus server to scrape. It is a
// package of its own so that only httpd links the Prometheus client
// library (sshd, which asks init's status through package httpd, does
// not).
//
// The names follow Prometheus' conventions (base units, _total on
// counters, one metric a meaning with labels for the instances). What each
// scrape reads: init's status (components, NICs, the machine's CPU time)
// and the journal's events since the last scrape. A counter here counts
// for the process it describes (a component's CPU time starts again with
// each generation, a driver's byte counters with each driver process):
// Prometheus' rate() takes such resets in its stride. The recovery
// histogram and the events counter are this process's own, fed by the
// events it reads; a restarted httpd rebuilds them from what the journal
// keeps.
//
// The exposition is the Prometheus client library's, not a format of our
// own: its escaping, its TYPE and HELP lines and its histogram buckets are
// what promtool and every scraper expect, and a custom registry keeps it
// to keepnet's metrics (none of the Go runtime's, which would describe
// httpd alone).
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// metrics is the /metrics handler's state.
type metrics struct {
	status func(ctx context.Context) (*ctl.Status, error)
	events func(ctx context.Context, since uint64) ([]journal.Event, uint64, error)

	recovery *prometheus.HistogramVec
	seen     *prometheus.CounterVec

	// mu serialises scrapes: next is the journal cursor of the events
	// not yet counted.
	mu   sync.Mutex
	next uint64
}

// RecoveryBuckets are the bounds, in seconds, of the recovery histogram:
// a component back in a fraction of a second is the goal; a hang takes
// its detection limit.
var RecoveryBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Timeout bounds the questions to init one scrape asks.
const Timeout = 2 * time.Second

var errNoStatus = errors.New("no status from init")

// Handler serves /metrics from a registry of its own, asking status for
// init's status and events (may be nil) for its journal's events.
func Handler(status func(ctx context.Context) (*ctl.Status, error),
	events func(ctx context.Context, since uint64) ([]journal.Event, uint64, error)) http.Handler {
	m := &metrics{
		status: status,
		events: events,
		recovery: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keepnet_component_recovery_seconds",
			Help:    "Time from the end of a component's process (crash, hang, kill, restart) to its next process serving.",
			Buckets: RecoveryBuckets,
		}, []string{"component"}),
		seen: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keepnet_events_total",
			Help: "Events in init's journal: start, restart, ready, exit, crash, hang, stop, signal, device-reset, inject.",
		}, []string{"component", "kind"}),
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, m.recovery, m.seen)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The events first, so that this scrape's histogram has them.
		ctx, cancel := context.WithTimeout(r.Context(), Timeout)
		m.countEvents(ctx)
		cancel()
		h.ServeHTTP(w, r)
	})
}

var (
	descReady      = prometheus.NewDesc("keepnet_ready", "1 when every component serves and the network is usable.", nil, nil)
	descCPU        = prometheus.NewDesc("keepnet_cpu_seconds_total", "Processor time of the appliance, summed over its CPUs, by mode.", []string{"mode"}, nil)
	descCompUp     = prometheus.NewDesc("keepnet_component_up", "1 when the component's process runs and said it serves.", []string{"component"}, nil)
	descRestarts   = prometheus.NewDesc("keepnet_component_restarts_total", "Starts of the component after its first.", []string{"component"}, nil)
	descHangs      = prometheus.NewDesc("keepnet_component_hangs_total", "Processes of the component killed because they hung.", []string{"component"}, nil)
	descGeneration = prometheus.NewDesc("keepnet_component_generation", "The generation of the component's current process.", []string{"component"}, nil)
	descCompCPU    = prometheus.NewDesc("keepnet_component_cpu_seconds_total", "Processor time (user and system) of the component's current process.", []string{"component"}, nil)
	descCompRSS    = prometheus.NewDesc("keepnet_component_resident_memory_bytes", "Resident memory of the component's current process.", []string{"component"}, nil)
	descCompUptime = prometheus.NewDesc("keepnet_component_uptime_seconds", "How long the component's current process has run.", []string{"component"}, nil)
	descNICInfo    = prometheus.NewDesc("keepnet_nic_info", "A NIC's identity: its PCI id, MAC and address.", []string{"nic", "pci_id", "mac", "address"}, nil)
	descNICUp      = prometheus.NewDesc("keepnet_nic_link_up", "1 when the NIC's link is up.", []string{"nic"}, nil)
	descNICRxB     = prometheus.NewDesc("keepnet_nic_receive_bytes_total", "Bytes the NIC received, since its driver process started.", []string{"nic"}, nil)
	descNICTxB     = prometheus.NewDesc("keepnet_nic_transmit_bytes_total", "Bytes the NIC transmitted, since its driver process started.", []string{"nic"}, nil)
	descNICRxP     = prometheus.NewDesc("keepnet_nic_receive_packets_total", "Frames the NIC received, since its driver process started.", []string{"nic"}, nil)
	descNICTxP     = prometheus.NewDesc("keepnet_nic_transmit_packets_total", "Frames the NIC transmitted, since its driver process started.", []string{"nic"}, nil)
	descNICResets  = prometheus.NewDesc("keepnet_nic_resets_total", "Device resets by the NIC's driver process.", []string{"nic"}, nil)
)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descCPU, descCompUp, descRestarts, descHangs, descGeneration, descCompCPU,
		descCompRSS, descCompUptime, descNICInfo, descNICUp, descNICRxB, descNICTxB, descNICRxP, descNICTxP, descNICResets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: what one status says.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if m.status == nil {
		ch <- prometheus.NewInvalidMetric(descReady, errNoStatus)
		return
	}
	st, err := m.status(ctx)
	if err != nil || st == nil {
		ch <- prometheus.NewInvalidMetric(descReady, errNoStatus)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descReady, boolValue(st.Ready))
	if c := st.CPU; c != nil {
		for mode, ms := range map[string]int64{"user": c.User, "system": c.System, "irq": c.IRQ, "idle": c.Idle, "steal": c.Stolen} {
			counter(descCPU, float64(ms)/1000, mode)
		}
	}
	for _, c := range st.Components {
		gauge(descCompUp, boolValue(c.State == "running" && c.Ready), c.Name)
		counter(descRestarts, float64(c.Restarts), c.Name)
		counter(descHangs, float64(c.Hangs), c.Name)
		gauge(descGeneration, float64(c.Generation), c.Name)
		if c.PID != 0 {
			counter(descCompCPU, float64(c.CPUMillis)/1000, c.Name)
			gauge(descCompRSS, float64(c.RSSKiB)*1024, c.Name)
			gauge(descCompUptime, float64(c.UptimeMillis)/1000, c.Name)
		}
	}
	for _, n := range st.NICs() {
		gauge(descNICInfo, 1, n.Name, n.PCIID, n.MAC, n.Addr)
		gauge(descNICUp, boolValue(n.LinkUp), n.Name)
		counter(descNICRxB, float64(n.RxBytes), n.Name)
		counter(descNICTxB, float64(n.TxBytes), n.Name)
		counter(descNICRxP, float64(n.RxFrames), n.Name)
		counter(descNICTxP, float64(n.TxFrames), n.Name)
		counter(descNICResets, float64(n.Resets), n.Name)
	}
}

// countEvents feeds the events since the last scrape to the recovery
// histogram and the events counter. A journal that does not answer is
// tried again at the next scrape.
func (m *metrics) countEvents(ctx context.Context) {
	if m.events == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for range 64 { // pages; bounded, the rest waits for the next scrape
		evs, next, err := m.events(ctx, m.next)
		if err != nil || len(evs) == 0 {
			return
		}
		for _, e := range evs {
			m.seen.WithLabelValues(e.Component, string(e.Kind)).Inc()
			if e.Kind == journal.Ready && e.Recovery > 0 {
				m.recovery.WithLabelValues(e.Component).Observe(e.RecoveryTime().Seconds())
			}
		}
		m.next = next
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
