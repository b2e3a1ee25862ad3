package transport

import (
	"context"
	"fmt"
	"log"
	"time"

	"keepnet/kernel/loop"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/store"
)

// StatsNS is the store namespace the counters are published in, under the
// component's name.
const StatsNS = "stats"

const joinTimeout = 10 * time.Second

// Core is a protocol core that recreates its sockets from the records a
// previous generation stored.
type Core[R Record] interface {
	Protocol
	Restore(rs []R) (restored int, errs []error)
}

// Serve runs a transport process until ctx ends: read the records of a
// previous generation from namespace ns (parse decodes one), join the
// wiring, take the "<name>.out" pool, have start make the core with the
// journal it is to write, restore the records into it — all before any
// neighbour is attached: step 1 of the restart protocol —, tell init we
// are up, and serve.
func Serve[R Record](ctx context.Context, c Config, st *store.Client, ns string, parse func(key string, value []byte) (R, error),
	start func(h Host, gen int, j Journal[R]) Core[R]) error {
	recs, err := LoadRecords(ctx, st, ns, parse)
	if err != nil {
		log.Printf("restoring sockets: %v", err)
	}
	journal := NewStoreJournal[R](st, ns)
	defer journal.Close()

	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	outName := c.Name + ".out"
	out := setup.Pools[outName]
	if out == nil {
		return fmt.Errorf("%s: init sent no %s pool", c.Name, outName)
	}
	c.Kept = setup.Kept
	pub := store.NewPublisher(st, StatsNS, c.Name)
	defer pub.Close()
	c.Publish = func(v any) { pub.Publish(v) }
	c.Release = conn.Release
	c.Stored = journal
	s := New(c, setup.Generation, out, func(h Host) Protocol {
		core := start(h, setup.Generation, journal)
		n, errs := core.Restore(recs)
		for _, err := range errs {
			log.Printf("restoring sockets: %v", err)
		}
		log.Printf("generation %d: %d sockets restored", setup.Generation, n)
		return core
	})

	hooks := []wiring.Hook{store.ProbeHook(st)}
	if h, ok := s.proto.(Hooked); ok {
		hooks = append(hooks, h.Hooks()...)
	}
	watch, err := wiring.Watch(conn, hooks...)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close() // ends the watcher
	for _, p := range setup.Peers {
		s.Attach(p)
	}
	if err := conn.Send(wiring.Message{Type: wiring.TypeUp}); err != nil {
		log.Printf("wiring: %v", err)
	}
	return s.Run(ctx, loop.FromWatcher(watch))
}

// Run is the loop (kernel/loop) until ctx ends.
func (s *Server) Run(ctx context.Context, peers loop.Peers) error {
	if err := loop.Run(ctx, peers, s, loop.Options{Publish: s.Publish}); err != nil {
		return fmt.Errorf("%s: %w", s.c.Name, err)
	}
	return nil
}

// OutPool is the pool the server sends segments in; for tests.
func (s *Server) OutPool() *pool.Pool { return s.out }
