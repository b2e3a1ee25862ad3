package httpd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"time"

	"keepnet/apps/splitmix"
)

// dialTimeout bounds a /dial connect.
const dialTimeout = 30 * time.Second

// dialResult is what GET /dial answers.
type dialResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	MS    int64  `json:"ms"` // how long the connect took
}

// serveDial connects to addr=IP:PORT over TCP through the server's stack,
// closes the connection at once, and says how it went and how long it
// took: how the integration tests see what an application gets from a
// connect (connection refused on an ICMP port unreachable, issue 19).
// It is served only with test hooks on (cmd/httpd): an appliance's status
// server is no place for a connect-anywhere probe.
func (s *server) serveDial(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("addr")
	if addr == "" {
		http.Error(w, "want addr=IP:PORT", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dialTimeout)
	defer cancel()
	start := time.Now()
	c, err := s.cfg.Dial(ctx, "tcp", addr)
	res := dialResult{OK: err == nil, MS: time.Since(start).Milliseconds()}
	if err != nil {
		res.Error = err.Error()
	} else {
		c.Close()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// fetchTimeout bounds a whole /fetch: a few tens of megabytes over an
// emulated link, across a restart of the stack's servers.
const fetchTimeout = 5 * time.Minute

// fetchResult is what GET /fetch answers.
type fetchResult struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Status int    `json:"status"` // the answer's HTTP status
	Bytes  int64  `json:"bytes"`  // of its body
	SHA256 string `json:"sha256"` // of its body, hex
	Body   string `json:"body,omitempty"`
	Local  string `json:"local"`  // the connection's ends, as the stack named them
	Remote string `json:"remote"` // (the local one IP chose, over IPv6)
	MS     int64  `json:"ms"`
}

// maxFetchBody is the most of a /fetch answer's body echoed in its result.
const maxFetchBody = 4 << 10

// serveFetch fetches url=URL (http only) through the server's stack, with
// Config.Dial (a host name resolved by the stack's resolver), and says how
// it went: the answer's status, its body's length and SHA-256 (and the
// body itself when short), the connection's two ends. With send=N it
// POSTs N bytes of splitmix(seed=S) instead of a GET. How the integration
// tests see an application's outgoing connections carry data (issue 20:
// active opens over IPv6). Only with test hooks on, as /dial.
func (s *server) serveFetch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("url")
	if !strings.HasPrefix(target, "http://") {
		http.Error(w, "want url=http://...", http.StatusBadRequest)
		return
	}
	var body io.Reader
	method := http.MethodGet
	if q.Has("send") {
		n, seed, err := parseBytesQuery(url.Values{"n": {q.Get("send")}, "seed": {q.Get("seed")}})
		if err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		method, body = http.MethodPost, io.LimitReader(splitmix.New(seed), n)
	}
	ctx, cancel := context.WithTimeout(r.Context(), fetchTimeout)
	defer cancel()
	var res fetchResult
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		res.Local, res.Remote = i.Conn.LocalAddr().String(), i.Conn.RemoteAddr().String()
	}})
	client := &http.Client{Transport: &http.Transport{DialContext: s.cfg.Dial, DisableKeepAlives: true}}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err == nil {
		var resp *http.Response
		if resp, err = client.Do(req); err == nil {
			h := sha256.New()
			head := &limitedBuffer{max: maxFetchBody}
			res.Status = resp.StatusCode
			res.Bytes, err = io.Copy(io.MultiWriter(h, head), resp.Body)
			resp.Body.Close()
			res.SHA256 = hex.EncodeToString(h.Sum(nil))
			if res.Bytes <= maxFetchBody {
				res.Body = head.String()
			}
		}
	}
	res.OK, res.MS = err == nil, time.Since(start).Milliseconds()
	if err != nil {
		res.Error = err.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	strings.Builder
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Builder.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
