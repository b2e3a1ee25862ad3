package httpd

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"keepnet/boot/ctl"
)

// The live page's script and style, served inside the page.
var (
	//go:embed live.js
	liveJS string
	//go:embed live.css
	liveCSS string
)

// statusTimeout bounds one status query made for a page view.
const statusTimeout = 2 * time.Second

var errNoStatus = errors.New("no status source configured")

// status asks the configured source for the appliance's status.
func (s *server) status(ctx context.Context) (*ctl.Status, error) {
	if s.cfg.Status == nil {
		return nil, errNoStatus
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := s.cfg.Status(ctx)
	if err == nil && st == nil {
		err = errors.New("status source returned no status")
	}
	return st, err
}

// serveStatusJSON answers GET /status.json with the ctl.Status, or 503 and
// {"error": "..."}.
func (s *server) serveStatusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	st, err := s.status(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// statusPage is the data of statusTemplate.
type statusPage struct {
	CSS    template.CSS // live.css
	JS     template.JS  // live.js
	Stack  string
	Status *ctl.Status
	Err    error
	PF     *pfSummary // nil: no packet filter runs
	IP     *ipSummary // nil: ip publishes nothing (yet, or the linux stack)
}

// ipSummary is what the page shows of the IP server's published
// statistics (servers/ip.Stats, read as JSON): every NIC with its address
// and counters, and with several, the routes and what was forwarded.
type ipSummary struct {
	Ifaces []struct {
		Driver, Addr, MAC                   string
		FramesIn, FramesOut, IPIn, IPOut    uint64
		IPDelivered, IPNotForUs, LinkErrors uint64
	}
	Routes     []string
	Forwarding struct {
		Forwarded, TTLExceeded, NoRoute, FragNeeded, Martians uint64
	}
}

// ipOf is the IP server's summary in st, or nil.
func ipOf(st *ctl.Status) *ipSummary {
	if st == nil {
		return nil
	}
	c, ok := st.Component("ip")
	if !ok || len(c.Stats) == 0 {
		return nil
	}
	var ip ipSummary
	if json.Unmarshal(c.Stats, &ip) != nil || len(ip.Ifaces) == 0 {
		return nil
	}
	return &ip
}

// pfSummary is what the page shows of the packet filter's published
// statistics (servers/pf.Stats, read as JSON: an application does not
// link the stack's servers).
type pfSummary struct {
	Default   string
	NumRules  int
	NumStates int
	Passed    uint64
	Blocked   uint64
	Rules     []struct {
		Rule                            string
		Line                            int
		Packets, Bytes, States, Refused uint64
	}
}

// pfOf is the packet filter's summary in st, or nil.
func pfOf(st *ctl.Status) *pfSummary {
	if st == nil {
		return nil
	}
	c, ok := st.Component("pf")
	if !ok || len(c.Stats) == 0 {
		return nil
	}
	var pf pfSummary
	if json.Unmarshal(c.Stats, &pf) != nil {
		return nil
	}
	return &pf
}

// serveStatusPage answers GET / with the HTML status page; 503 if the
// status is unavailable, with the reason on the page.
func (s *server) serveStatusPage(w http.ResponseWriter, r *http.Request) {
	s.startSampler(r.Context())
	st, err := s.status(r.Context())
	code := http.StatusOK
	if err != nil {
		code = http.StatusServiceUnavailable
	}
	// Render first, so a template failure is a clean 500, not half a page.
	var page bytes.Buffer
	if terr := statusTemplate.Execute(&page, statusPage{CSS: template.CSS(liveCSS), JS: template.JS(liveJS), Stack: s.cfg.Stack, Status: st, Err: err, PF: pfOf(st), IP: ipOf(st)}); terr != nil {
		http.Error(w, "rendering status page: "+terr.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(page.Len()))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(page.Bytes())
}

// statusTemplate is the status page: the state at the time of the request,
// rendered here (what a browser without JavaScript shows), and the live
// view live.js draws over it from /live.json. html/template escapes every
// value by context: component names and errors come from other processes.
var statusTemplate = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keepnet status</title>
<style>{{.CSS}}</style>
</head>
<body>
<header>
<h1>keepnet</h1>
<span id="state" class="pill {{if .Err}}bad{{else if .Status.Ready}}ok{{else}}warn{{end}}">{{if .Err}}status unavailable{{else if .Status.Ready}}ready{{else}}not ready{{end}}</span>
<span id="updated" class="meta">network stack: <strong>{{.Stack}}</strong>
{{- with .Status}} &middot; appliance {{if .Ready}}ready{{else}}starting{{end}}
{{- if .Stack}} &middot; configured stack: {{.Stack}}{{end}}{{end}}</span>
</header>
<p id="waiting" class="meta"></p>
<div id="live" hidden>
<section id="nics-section"><h2>Interfaces</h2><div id="nics" class="nics"></div></section>
<section><h2>Components</h2><div id="components"></div></section>
<section><h2>Events</h2><div id="events"></div></section>
<section><h2>Recent log lines</h2><pre id="logs" class="logs"></pre></section>
</div>
<div id="initial">
{{if .Err -}}
<p class="error">status unavailable: {{.Err}}</p>
{{- else -}}
<div class="scroll"><table>
<thead><tr><th>component</th><th>pid</th><th>state</th><th>restarts</th><th>generation</th><th>memory</th><th>last exit</th></tr></thead>
<tbody>
{{- range .Status.Components}}
<tr><td>{{.Name}}</td><td class="num">{{.PID}}</td><td class="{{if eq .State "running"}}running{{else}}other{{end}}">{{.State}}</td><td class="num">{{.Restarts}}</td><td class="num">{{.Generation}}</td><td class="num">{{if .RSSKiB}}{{.RSSKiB}} KiB{{end}}</td><td>{{.LastExit}}</td></tr>
{{- else}}
<tr><td colspan="6">no components</td></tr>
{{- end}}
</tbody>
</table></div>
{{- with .IP}}
<h2>network interfaces</h2>
<div class="scroll"><table>
<thead><tr><th>driver</th><th>address</th><th>MAC</th><th>frames in</th><th>frames out</th><th>IP in</th><th>IP out</th><th>delivered</th><th>not for us</th></tr></thead>
<tbody>
{{- range .Ifaces}}
<tr><td>{{.Driver}}</td><td>{{.Addr}}</td><td>{{.MAC}}</td><td class="num">{{.FramesIn}}</td><td class="num">{{.FramesOut}}</td><td class="num">{{.IPIn}}</td><td class="num">{{.IPOut}}</td><td class="num">{{.IPDelivered}}</td><td class="num">{{.IPNotForUs}}</td></tr>
{{- end}}
</tbody>
</table></div>
{{- end}}
{{- end}}
</div>
{{- with .IP}}
{{- if .Routes}}
<h2>routes</h2>
<p class="meta">{{range $i, $r := .Routes}}{{if $i}} &middot; {{end}}{{$r}}{{end}}</p>
{{- with .Forwarding}}
<p class="meta">forwarded {{.Forwarded}} &middot; TTL exceeded {{.TTLExceeded}} &middot; no route {{.NoRoute}} &middot; fragmentation needed {{.FragNeeded}} &middot; martians {{.Martians}}</p>
{{- end}}
{{- end}}
{{- end}}
{{- with .PF}}
<h2>packet filter</h2>
<p class="meta">{{.NumRules}} rules, default {{.Default}} &middot; {{.NumStates}} states &middot; {{.Passed}} packets passed, {{.Blocked}} blocked</p>
<div class="scroll"><table>
<thead><tr><th>line</th><th>rule</th><th>packets</th><th>bytes</th><th>states</th></tr></thead>
<tbody>
{{- range .Rules}}
<tr><td class="num">{{.Line}}</td><td>{{.Rule}}</td><td class="num">{{.Packets}}</td><td class="num">{{.Bytes}}</td><td class="num">{{.States}}</td></tr>
{{- end}}
</tbody>
</table></div>
{{- end}}
<script>{{.JS}}</script>
</body>
</html>
`))
