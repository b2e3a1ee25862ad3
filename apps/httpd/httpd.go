// Package httpd is keepnet's demo web server, served on port 80 of the
// appliance. It shows the supervisor's view of the components (/ and
// /status.json) and is the load generator of the throughput tests: /bytes
// streams a verifiable splitmix byte stream of any length and /sink swallows
// an upload of any length and returns its SHA-256, so both directions of a
// transfer through the appliance are checked end to end.
//
// The server takes its listener from outside (see package netapi) so it runs
// unchanged on the Linux stack and on keepnet's socket API.
//
// Recovery: httpd keeps no state. If it crashes the supervisor restarts it and
// clients reconnect; a transfer in flight is lost and must be retried.
package httpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// Config is what the handler needs from its surroundings.
type Config struct {
	// Status returns the appliance's component status (from init, over the
	// ctl protocol; see QueryStatus). Nil means no status source.
	Status func(ctx context.Context) (*ctl.Status, error)
	// Stack names the network stack this server runs on, e.g. "linux".
	Stack string
	// Metrics serves GET /metrics (package httpd/metrics); nil: no such
	// route.
	Metrics http.Handler
	// Events and Logs read init's journal from a cursor (QueryEvents,
	// QueryLogs) for the live page; nil: it shows none.
	Events func(ctx context.Context, since uint64) ([]journal.Event, uint64, error)
	Logs   func(ctx context.Context, name string, since uint64) ([]journal.Line, uint64, error)
	// SampleEvery is how often the live page's sampler asks init
	// (default SampleEvery); NoSampler keeps it from running on its own:
	// tests call sample with the times they choose.
	SampleEvery time.Duration
	NoSampler   bool
	// Dial, if set, serves GET /dial and GET /fetch (dial.go): a test's
	// probes of the stack's outgoing connections. Only with test hooks on.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// New returns the handler of every route:
//
//	GET  /               the live status page (live.go): it updates itself
//	GET  /live.json      what it shows: components, NICs with rates and history, events, lines
//	GET  /status.json    the ctl.Status as JSON
//	GET  /metrics        Prometheus' text format (Config.Metrics)
//	GET  /bytes?n=N&seed=S  N bytes of splitmix.New(S)
//	POST /sink, PUT /sink   {"bytes":N,"sha256":"..."} of the request body
//	GET  /dial?addr=IP:PORT  with Config.Dial: {"ok":...,"error":"...","ms":N} of a TCP connect
//	GET  /fetch?url=URL[&send=N&seed=S]  with Config.Dial: the status, length and SHA-256 of what
//	                         a GET (or a POST of N bytes) of URL answered, and the connection's ends
//
// GET routes answer HEAD too. Other methods on a known path get 405 with an
// Allow header; unknown paths 404.
func New(cfg Config) http.Handler {
	s := &server{cfg: cfg, live: &live{cfg: cfg}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveStatusPage)
	mux.HandleFunc("GET /status.json", s.serveStatusJSON)
	mux.HandleFunc("GET /live.json", s.serveLive)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("GET /bytes", serveBytes)
	mux.HandleFunc("POST /sink", serveSink)
	mux.HandleFunc("PUT /sink", serveSink)
	if cfg.Dial != nil {
		mux.HandleFunc("GET /dial", s.serveDial)
		mux.HandleFunc("GET /fetch", s.serveFetch)
	}
	return mux
}

type server struct {
	cfg  Config
	live *live
}

// Timeouts of Serve. There is no read or write timeout on a whole request:
// an upload to /sink or a download from /bytes may be a gigabyte over a slow
// emulated link.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// shutdownTimeout bounds how long Serve waits for requests in flight once its
// context is done; a variable so tests can shorten it.
var shutdownTimeout = 5 * time.Second

// Serve serves h on l until ctx is done, then shuts down gracefully: it stops
// accepting, lets requests in flight finish for up to a few seconds and then
// closes whatever connections remain. Serve closes l. It returns nil after a
// graceful shutdown, an error if connections had to be cut or if l failed.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	select {
	case err := <-served:
		return fmt.Errorf("httpd: serve %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("httpd: shutdown after %v, closing connections in flight: %w", shutdownTimeout, err)
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("httpd: serve %s: %w", l.Addr(), serr))
	}
	return err
}
