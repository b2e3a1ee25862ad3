package httpd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"keepnet/boot/ctl"
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
	st, err := s.status(r.Context())
	code := http.StatusOK
	if err != nil {
		code = http.StatusServiceUnavailable
	}
	// Render first, so a template failure is a clean 500, not half a page.
	var page bytes.Buffer
	if terr := statusTemplate.Execute(&page, statusPage{Stack: s.cfg.Stack, Status: st, Err: err, PF: pfOf(st), IP: ipOf(st)}); terr != nil {
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

// statusTemplate is the status page. html/template escapes every value by
// context: component names and errors come from other processes.
var statusTemplate = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keepnet status</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 56em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: .2em; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .35em .8em; border-bottom: 1px solid #ddd; }
th { background: #f4f4f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.running { color: #17702e; }
.other { color: #a15c00; }
.error { background: #fdecea; border: 1px solid #f5c2c0; color: #8a1c14; padding: .8em 1em; }
</style>
</head>
<body>
<h1>keepnet</h1>
<p class="meta">network stack: <strong>{{.Stack}}</strong>
{{- with .Status}} &middot; appliance {{if .Ready}}ready{{else}}starting{{end}}
{{- if .Stack}} &middot; configured stack: {{.Stack}}{{end}}{{end}}</p>
{{if .Err -}}
<p class="error">status unavailable: {{.Err}}</p>
{{- else -}}
<table>
<thead><tr><th>component</th><th>pid</th><th>state</th><th>restarts</th><th>generation</th><th>memory</th><th>last exit</th></tr></thead>
<tbody>
{{- range .Status.Components}}
<tr><td>{{.Name}}</td><td class="num">{{.PID}}</td><td class="{{if eq .State "running"}}running{{else}}other{{end}}">{{.State}}</td><td class="num">{{.Restarts}}</td><td class="num">{{.Generation}}</td><td class="num">{{if .RSSKiB}}{{.RSSKiB}} KiB{{end}}</td><td>{{.LastExit}}</td></tr>
{{- else}}
<tr><td colspan="6">no components</td></tr>
{{- end}}
</tbody>
</table>
{{- with .IP}}
<h2>network interfaces</h2>
<table>
<thead><tr><th>driver</th><th>address</th><th>MAC</th><th>frames in</th><th>frames out</th><th>IP in</th><th>IP out</th><th>delivered</th><th>not for us</th></tr></thead>
<tbody>
{{- range .Ifaces}}
<tr><td>{{.Driver}}</td><td>{{.Addr}}</td><td>{{.MAC}}</td><td class="num">{{.FramesIn}}</td><td class="num">{{.FramesOut}}</td><td class="num">{{.IPIn}}</td><td class="num">{{.IPOut}}</td><td class="num">{{.IPDelivered}}</td><td class="num">{{.IPNotForUs}}</td></tr>
{{- end}}
</tbody>
</table>
{{- if .Routes}}
<p class="meta">routes: {{range $i, $r := .Routes}}{{if $i}} &middot; {{end}}{{$r}}{{end}}</p>
{{- with .Forwarding}}
<p class="meta">forwarded {{.Forwarded}} &middot; TTL exceeded {{.TTLExceeded}} &middot; no route {{.NoRoute}} &middot; fragmentation needed {{.FragNeeded}} &middot; martians {{.Martians}}</p>
{{- end}}
{{- end}}
{{- end}}
{{- with .PF}}
<h2>packet filter</h2>
<p class="meta">{{.NumRules}} rules, default {{.Default}} &middot; {{.NumStates}} states &middot; {{.Passed}} packets passed, {{.Blocked}} blocked</p>
<table>
<thead><tr><th>line</th><th>rule</th><th>packets</th><th>bytes</th><th>states</th></tr></thead>
<tbody>
{{- range .Rules}}
<tr><td class="num">{{.Line}}</td><td>{{.Rule}}</td><td class="num">{{.Packets}}</td><td class="num">{{.Bytes}}</td><td class="num">{{.States}}</td></tr>
{{- end}}
</tbody>
</table>
{{- end}}
{{- end}}
</body>
</html>
`))
