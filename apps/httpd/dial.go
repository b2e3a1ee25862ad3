package httpd

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
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
