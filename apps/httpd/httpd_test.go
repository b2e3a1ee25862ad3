package httpd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// splitmixBytes generates the expected /bytes body independently of package
// splitmix.
func splitmixBytes(seed uint64, n int) []byte {
	out := make([]byte, 0, n+8)
	for len(out) < n {
		seed += 0x9E3779B97F4A7C15
		z := seed
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		for i := range 8 {
			out = append(out, byte(z>>(8*i)))
		}
	}
	return out[:n]
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

var testStatus = &ctl.Status{
	Ready: true,
	Stack: "linux",
	Components: []ctl.Component{
		{Name: "e1000", PID: 41, State: "running", Restarts: 2, Generation: 3, LastExit: "signal: killed"},
		{Name: "<b>evil</b>", PID: 42, State: "<i>odd</i>", Generation: 1},
	},
}

func newTestServer(t *testing.T, status func(context.Context) (*ctl.Status, error)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{Status: status, Stack: "linux"}))
	t.Cleanup(srv.Close)
	return srv
}

func okStatus(context.Context) (*ctl.Status, error) { return testStatus, nil }

func failStatus(context.Context) (*ctl.Status, error) {
	return nil, errors.New("init <unreachable> & gone")
}

// do sends one request and returns the response with its whole body.
func do(t *testing.T, method, url string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

func TestBytes(t *testing.T) {
	srv := newTestServer(t, okStatus)
	tests := []struct {
		query string
		seed  uint64
		n     int
	}{
		{"n=0", 0, 0},
		{"n=1", 0, 1},
		{"n=7&seed=1", 1, 7},
		{"n=8&seed=42", 42, 8},
		{"n=9&seed=0x2A", 42, 9},
		{"n=1000&seed=0XdeadBEEF", 0xDEADBEEF, 1000},
		{"n=300001&seed=18446744073709551615", 1<<64 - 1, 300001}, // more than one copy buffer
		{"n=3000000&seed=010", 10, 3000000},                       // decimal, not octal
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", srv.URL+"/bytes?"+tt.query, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /bytes?%s: status = %d, want 200 (%s)", tt.query, resp.StatusCode, body)
			continue
		}
		if got, want := resp.Header.Get("Content-Length"), fmt.Sprint(tt.n); got != want {
			t.Errorf("GET /bytes?%s: Content-Length = %q, want %q", tt.query, got, want)
		}
		if got, want := resp.Header.Get("Content-Type"), "application/octet-stream"; got != want {
			t.Errorf("GET /bytes?%s: Content-Type = %q, want %q", tt.query, got, want)
		}
		if len(body) != tt.n {
			t.Errorf("GET /bytes?%s: got %d bytes, want %d", tt.query, len(body), tt.n)
		}
		if got, want := sha(body), sha(splitmixBytes(tt.seed, tt.n)); got != want {
			t.Errorf("GET /bytes?%s: sha256 = %s, want %s", tt.query, got, want)
		}
	}
}

func TestBytesHead(t *testing.T) {
	srv := newTestServer(t, okStatus)
	for _, n := range []string{"0", "12345", "1099511627776"} {
		resp, body := do(t, "HEAD", srv.URL+"/bytes?n="+n, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != n || len(body) != 0 {
			t.Errorf("HEAD /bytes?n=%s = %d, Content-Length %q, %d body bytes; want 200, %q, 0",
				n, resp.StatusCode, resp.Header.Get("Content-Length"), len(body), n)
		}
	}
}

func TestBytesBadParams(t *testing.T) {
	srv := newTestServer(t, okStatus)
	tests := []struct {
		query   string
		mention string // what the message must name
	}{
		{"", "missing parameter n"},
		{"seed=1", "missing parameter n"},
		{"n=", `n=""`},
		{"n=-1", `n="-1"`},
		{"n=abc", `n="abc"`},
		{"n=0x10", `n="0x10"`},
		{"n=1099511627777", `n="1099511627777"`},
		{"n=99999999999999999999", `n="99999999999999999999"`},
		{"n=1&seed=-1", `seed="-1"`},
		{"n=1&seed=", `seed=""`},
		{"n=1&seed=0x", `seed="0x"`},
		{"n=1&seed=0xZZ", `seed="0xZZ"`},
		{"n=1&seed=1_000", `seed="1_000"`},
		{"n=1&seed=0b101", `seed="0b101"`},
		{"n=1&seed=18446744073709551616", `seed="18446744073709551616"`},
		{"n=1&seed=0x10000000000000000", `seed="0x10000000000000000"`},
	}
	for _, tt := range tests {
		resp, body := do(t, "GET", srv.URL+"/bytes?"+tt.query, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), tt.mention) {
			t.Errorf("GET /bytes?%s = %d %q, want 400 mentioning %q", tt.query, resp.StatusCode, body, tt.mention)
		}
	}
}

func TestSink(t *testing.T) {
	srv := newTestServer(t, okStatus)
	tests := []struct {
		method string
		body   []byte
	}{
		{"POST", nil},
		{"POST", []byte("hello")},
		{"PUT", splitmixBytes(5, 3<<20+17)},
		{"POST", splitmixBytes(6, 5<<20)},
	}
	for _, tt := range tests {
		resp, body := do(t, tt.method, srv.URL+"/sink", bytes.NewReader(tt.body))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /sink (%d bytes): status = %d, want 200 (%s)", tt.method, len(tt.body), resp.StatusCode, body)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("%s /sink: Content-Type = %q, want application/json", tt.method, got)
		}
		var got sinkReply
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%s /sink: reply %q: %v", tt.method, body, err)
		}
		if want := (sinkReply{Bytes: int64(len(tt.body)), SHA256: sha(tt.body)}); got != want {
			t.Errorf("%s /sink (%d bytes) = %+v, want %+v", tt.method, len(tt.body), got, want)
		}
	}
}

// TestSinkChunked uploads a body of unknown length.
func TestSinkChunked(t *testing.T) {
	srv := newTestServer(t, okStatus)
	want := splitmixBytes(9, 1<<20+3)
	resp, body := do(t, "POST", srv.URL+"/sink", io.MultiReader(bytes.NewReader(want))) // hides Len: chunked
	var got sinkReply
	json.Unmarshal(body, &got)
	if resp.StatusCode != 200 || got.Bytes != int64(len(want)) || got.SHA256 != sha(want) {
		t.Errorf("chunked POST /sink = %d %+v, want 200 {%d %s}", resp.StatusCode, got, len(want), sha(want))
	}
}

func TestMethodsAndPaths(t *testing.T) {
	srv := newTestServer(t, okStatus)
	tests := []struct {
		method, path string
		wantCode     int
		wantAllow    []string
	}{
		{"GET", "/sink", 405, []string{"POST", "PUT"}},
		{"DELETE", "/sink", 405, []string{"POST", "PUT"}},
		{"POST", "/bytes?n=1", 405, []string{"GET", "HEAD"}},
		{"POST", "/", 405, []string{"GET", "HEAD"}},
		{"PUT", "/status.json", 405, []string{"GET", "HEAD"}},
		{"GET", "/nope", 404, nil},
		{"GET", "/bytes/1", 404, nil},
		{"GET", "/status.json/x", 404, nil},
		{"POST", "/sink/x", 404, nil},
		{"HEAD", "/", 200, nil},
	}
	for _, tt := range tests {
		resp, _ := do(t, tt.method, srv.URL+tt.path, nil)
		if resp.StatusCode != tt.wantCode {
			t.Errorf("%s %s: status = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.wantCode)
		}
		allow := resp.Header.Get("Allow")
		for _, m := range tt.wantAllow {
			if !strings.Contains(allow, m) {
				t.Errorf("%s %s: Allow = %q, want it to list %s", tt.method, tt.path, allow, m)
			}
		}
	}
}

func TestStatusPage(t *testing.T) {
	srv := newTestServer(t, okStatus)
	resp, body := do(t, "GET", srv.URL+"/", nil)
	page := string(body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET / status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("GET / Content-Type = %q, want text/html; charset=utf-8", got)
	}
	for _, want := range []string{
		`fetch("live.json"`, `<div id="live" hidden>`,
		"<strong>linux</strong>",
		"ready",
		"<td>e1000</td>", ">41<", ">running<", ">2<", ">3<", "signal: killed",
		"&lt;b&gt;evil&lt;/b&gt;", "&lt;i&gt;odd&lt;/i&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("GET / page lacks %q:\n%s", want, page)
		}
	}
	for _, bad := range []string{"<b>evil", "<i>odd"} {
		if strings.Contains(page, bad) {
			t.Errorf("GET / page contains unescaped %q", bad)
		}
	}
}

func TestStatusPageError(t *testing.T) {
	for name, status := range map[string]func(context.Context) (*ctl.Status, error){
		"failing": failStatus,
		"nil":     nil,
		"empty":   func(context.Context) (*ctl.Status, error) { return nil, nil },
	} {
		srv := newTestServer(t, status)
		resp, body := do(t, "GET", srv.URL+"/", nil)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "status unavailable") {
			t.Errorf("%s status source: GET / = %d, want 503 and the error on the page:\n%s", name, resp.StatusCode, body)
		}
		if name == "failing" && !strings.Contains(string(body), "init &lt;unreachable&gt; &amp; gone") {
			t.Errorf("GET / does not show the escaped error:\n%s", body)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	srv := newTestServer(t, okStatus)
	resp, body := do(t, "GET", srv.URL+"/status.json", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status.json = %d, Content-Type %q; want 200, application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got ctl.Status
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET /status.json body %q: %v", body, err)
	}
	if !reflect.DeepEqual(&got, testStatus) {
		t.Errorf("GET /status.json = %+v, want %+v", got, *testStatus)
	}
}

func TestStatusJSONError(t *testing.T) {
	srv := newTestServer(t, failStatus)
	resp, body := do(t, "GET", srv.URL+"/status.json", nil)
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET /status.json body %q: %v", body, err)
	}
	want := map[string]string{"error": "init <unreachable> & gone"}
	if resp.StatusCode != 503 || !reflect.DeepEqual(got, want) || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /status.json = %d %v (%s), want 503 %v (application/json)", resp.StatusCode, got, resp.Header.Get("Content-Type"), want)
	}
}

// TestServeGraceful: a request in flight when the context ends completes,
// then Serve returns nil and the listener is closed.
func TestServeGraceful(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, h) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + l.Addr().String() + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-entered
	cancel()
	// Shutdown has closed the listener once a new dial is refused.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after cancel")
		}
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("request in flight during shutdown got %q, want %q", body, "done")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after graceful shutdown = %v, want nil", err)
	}
}

// TestServeForced: a request that outlasts the shutdown timeout is cut and
// Serve says so.
func TestServeForced(t *testing.T) {
	defer func(d time.Duration) { shutdownTimeout = d }(shutdownTimeout)
	shutdownTimeout = 50 * time.Millisecond

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // ends when the connection is closed
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, l, h) }()
	go http.Get("http://" + l.Addr().String() + "/")
	<-entered
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve with a stuck request = %v, want an error wrapping %v", err, context.DeadlineExceeded)
		}
	case <-time.After(time.Minute): // its 50 ms and what a loaded host adds
		t.Fatal("Serve did not return after its shutdown timeout")
	}
}

// BenchmarkBytesDownload measures /bytes over loopback HTTP.
func BenchmarkBytesDownload(b *testing.B) {
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	const n = 64 << 20
	b.SetBytes(n)
	buf := make([]byte, 256<<10)
	for b.Loop() {
		resp, err := http.Get(srv.URL + "/bytes?n=" + fmt.Sprint(n))
		if err != nil {
			b.Fatal(err)
		}
		got, err := io.CopyBuffer(io.Discard, resp.Body, buf)
		resp.Body.Close()
		if got != n || err != nil {
			b.Fatalf("downloaded %d bytes, %v; want %d", got, err, n)
		}
	}
}

// With a packet filter, the page shows its rules with their counters and
// its state count.
func TestStatusPagePF(t *testing.T) {
	st := *testStatus
	st.Components = append(st.Components, ctl.Component{Name: "pf", State: "running", Stats: json.RawMessage(
		`{"Default":"block","NumRules":1,"NumStates":4,"Passed":10,"Blocked":3,
		"Rules":[{"Rule":"pass in proto tcp from any to any port 80 keep state","Line":3,"Packets":10,"Bytes":800,"States":4}]}`)})
	srv := newTestServer(t, func(context.Context) (*ctl.Status, error) { return &st, nil })
	_, body := do(t, "GET", srv.URL+"/", nil)
	for _, want := range []string{"packet filter", "1 rules, default block", "4 states", "10 packets passed, 3 blocked",
		">3<", "port 80 keep state", ">800<"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET / page lacks %q:\n%s", want, body)
		}
	}
	_, body = do(t, "GET", newTestServer(t, okStatus).URL+"/", nil)
	if strings.Contains(string(body), "packet filter") {
		t.Error("GET / shows a packet filter on an appliance without one")
	}
}

// The page lists every NIC with its address and counters, and with
// several, the routes and the forwarding counters.
func TestStatusPageNICs(t *testing.T) {
	st := *testStatus
	st.Components = append(st.Components, ctl.Component{Name: "ip", State: "running", Stats: json.RawMessage(
		`{"Ifaces":[{"Driver":"e1000.0","Addr":"10.77.0.1/24","MAC":"52:54:00:12:34:56","FramesIn":11,"FramesOut":12},
		{"Driver":"e1000.1","Addr":"10.78.0.1/24","MAC":"52:54:00:12:34:57","FramesIn":21,"FramesOut":22}],
		"Routes":["10.90.0.0/16 via 10.78.0.2 dev 1"],"Forwarding":{"Forwarded":31,"TTLExceeded":2}}`)})
	srv := newTestServer(t, func(context.Context) (*ctl.Status, error) { return &st, nil })
	_, body := do(t, "GET", srv.URL+"/", nil)
	for _, want := range []string{"network interfaces", "e1000.0", "10.77.0.1/24", ">11<", "e1000.1", "10.78.0.1/24", ">22<",
		"10.90.0.0/16 via 10.78.0.2 dev 1", "forwarded 31", "TTL exceeded 2"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET / page lacks %q:\n%s", want, body)
		}
	}
}
