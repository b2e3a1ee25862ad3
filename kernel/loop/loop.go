// Package loop is the event loop of a server process: the one goroutine
// that takes new neighbour generations from the wiring, moves messages on
// its channels in batches, runs what is due, publishes its counters, and
// sleeps in channel.WaitAny when nothing moves (kernel/channel: a sleeper
// is woken by the first message, with no system call while busy).
//
// Every server (ip, the transports, syscall) runs it over a small
// [Process]; what differs between them is in Attach and Poll.
//
// Restart: the loop itself keeps nothing. A new generation of a
// neighbour arrives on [Peers].C (the wiring watcher, kernel/wiring) and
// goes to Process.Attach before the next poll, so that a server never
// sends to a dead generation's channel once it knows of the new one; what
// to resubmit is the Process's business (kernel/channel.Outstanding).
//
// A broken channel (kernel/channel.ErrBroken: a neighbour corrupted a ring
// index or broke the protocol) ends the loop with that error, which the
// process turns into its exit status (kernel/exitcode.BrokenChannel): the
// supervisor restarts it, which gives it and its neighbours fresh channels.
// Nothing is ever received on a broken channel again, so carrying on would
// only spin or stall.
package loop

import (
	"context"
	"errors"
	"fmt"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/wiring"
)

// Peers is where new neighbour generations come from: the wiring watcher
// ([FromWatcher]), or a test. Fd, if not negative, is readable while C has
// some; Drain, if not nil, resets it. Alive, if not nil, is called every
// round: it answers init's pings from the loop itself (wiring.Watcher.Alive,
// "Hang detection" in kernel/wiring).
type Peers struct {
	C     <-chan *wiring.Peer
	Fd    int
	Drain func()
	Alive func()
}

// FromWatcher is the Peers of a process: its wiring watcher.
func FromWatcher(w *wiring.Watcher) Peers {
	return Peers{C: w.C, Fd: w.Fd(), Drain: w.Drain, Alive: w.Alive}
}

// Process is what the loop drives. The loop calls it from one goroutine.
type Process interface {
	// Attach starts talking to a (new generation of a) neighbour.
	Attach(p *wiring.Peer)
	// Poll moves messages once on every channel and runs what is due. It
	// reports whether anything moved (the loop polls again at once) and
	// when it must run again at the latest (zero: when a message, the
	// wiring or the next publication wakes it).
	Poll() (busy bool, wake time.Time)
	// AppendPorts appends the channels a sleeping process waits on.
	AppendPorts(dst []*channel.Endpoint) []*channel.Endpoint
}

// Options configure Run.
type Options struct {
	// Publish, if not nil, is called at once and then every PublishEvery
	// (a second if zero): the process publishes its counters.
	Publish      func()
	PublishEvery time.Duration
}

// ErrWiringClosed: init closed the wiring socket; the process ends.
var ErrWiringClosed = errors.New("init closed the wiring socket")

// Run runs the loop until ctx ends (nil), the wiring closes
// (ErrWiringClosed) or a channel breaks (an error wrapping
// kernel/channel.ErrBroken).
func Run(ctx context.Context, peers Peers, p Process, o Options) error {
	if o.PublishEvery == 0 {
		o.PublishEvery = time.Second
	}
	var nextPublish time.Time
	var ports []*channel.Endpoint // reused by every sleep
	var woken uint64              // the ports' wake-ups of their peers so far
	for ctx.Err() == nil {
		if peers.Alive != nil {
			peers.Alive()
		}
		select {
		case peer, ok := <-peers.C:
			if !ok {
				return ErrWiringClosed
			}
			p.Attach(peer)
			continue
		default:
		}
		busy, wake := p.Poll()
		now := time.Now()
		if o.Publish != nil && now.After(nextPublish) {
			o.Publish()
			nextPublish = now.Add(o.PublishEvery)
		}
		ports = p.AppendPorts(ports[:0])
		if err := broken(ports); err != nil {
			return err
		}
		w := wakeups(ports)
		channel.Handoff(w > woken) // the neighbours this round woke run first
		woken = w
		if busy {
			continue
		}
		d := o.PublishEvery
		if o.Publish != nil {
			d = nextPublish.Sub(now)
		}
		if !wake.IsZero() {
			d = min(d, wake.Sub(now))
		}
		if err := Sleep(ports, peers, d); err != nil {
			return err
		}
	}
	return nil
}

// wakeups is how many times ports woke their peers, in all.
func wakeups(ports []*channel.Endpoint) uint64 {
	var n uint64
	for _, p := range ports {
		n += p.Wakeups()
	}
	return n
}

// broken is the error of the first broken channel among ports, or nil.
func broken(ports []*channel.Endpoint) error {
	for _, p := range ports {
		if err := p.Err(); err != nil {
			return fmt.Errorf("loop: %w", err)
		}
	}
	return nil
}

// Sleep waits at most d for a message on one of ports or a new
// generation on peers. An in-process source (no Fd) is looked at again
// within a millisecond. It returns the error of a port that is broken or
// closed (channel.WaitAny), on which the loop must not sleep again. It
// allocates nothing: an idle server sleeps once per round.
func Sleep(ports []*channel.Endpoint, peers Peers, d time.Duration) error {
	var fds []int
	var fdBuf [1]int
	var readable [1]bool
	if peers.Fd >= 0 {
		fdBuf[0] = peers.Fd
		fds = fdBuf[:]
	} else {
		d = min(d, time.Millisecond)
	}
	err := channel.WaitAny(readable[:len(fds)], ports, fds, max(d, 0))
	if readable[0] && peers.Drain != nil {
		peers.Drain()
	}
	if err != nil {
		return fmt.Errorf("loop: %w", err)
	}
	return nil
}
