// Package pooltest plays a neighbour that breaks the pool discipline in
// tests: one that rewrites a buffer it shares with the process under test
// while that process parses it (issue 11: a length validated and then
// re-read from shared memory is a crash waiting for such a neighbour).
//
// The buffer must be pool memory (kernel/pool, mmap'ed outside the Go heap):
// the race detector does not watch it, so a test using a Rewriter runs under
// -race too, where it checks everything else the parser touches.
package pooltest

import (
	"sync"
	"sync/atomic"
	"time"
)

// Rewriter stores versions of a buffer into shared memory, one after the
// other and as fast as it can, from its own goroutine, until Stop.
type Rewriter struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	writes atomic.Uint64
}

// Rewrite starts rewriting buf with each of versions in turn (each no
// longer than buf).
func Rewrite(buf []byte, versions ...[]byte) *Rewriter {
	r := &Rewriter{stop: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			for _, v := range versions {
				select {
				case <-r.stop:
					return
				default:
				}
				copy(buf, v)
				r.writes.Add(1)
			}
		}
	}()
	return r
}

// Writes is how many versions have been stored so far.
func (r *Rewriter) Writes() uint64 { return r.writes.Load() }

// Stop ends the rewriting and returns how many versions were stored.
func (r *Rewriter) Stop() uint64 {
	close(r.stop)
	r.wg.Wait()
	return r.writes.Load()
}

// Race runs round again and again, with r rewriting meanwhile, until
// rounds of them have raced with a rewrite (r stored a version while the
// round ran), or until d has passed (a machine too busy to run both at
// once); it returns how many rounds raced and how many ran. A round that
// panics (a parser that re-read a field) fails the test through the panic,
// which round may recover to report it.
func Race(r *Rewriter, rounds int, d time.Duration, round func()) (raced, ran int) {
	deadline := time.Now().Add(d)
	for raced < rounds && (ran%64 != 0 || time.Now().Before(deadline)) {
		before := r.Writes()
		round()
		if r.Writes() != before {
			raced++
		}
		ran++
	}
	return raced, ran
}
