package channel

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// spinChecks is how many times Wait re-checks an empty ring before it
// announces sleep: a peer that answers within a few microseconds is caught
// without two system calls on each side. Wait spins only while traffic
// flows (its previous wait ended with a message): a receiver woken by its
// timeout on an idle channel goes straight back to sleep, or every idle
// application would burn a slice of a CPU per timeout.
const spinChecks = 2000

// Endpoint is one side of a channel: it sends on one ring and receives on
// the other.
//
// Concurrency: one goroutine at a time may Send (the producer of the send
// ring) and one at a time may Recv, Wait, Arm and Disarm (the consumer of
// the receive ring); the two may differ. Stats and Wake may be called from
// anywhere.
// Close must not run concurrently with anything else.
type Endpoint struct {
	// Producer state; only the sending goroutine touches it.
	tx       ring
	txProd   uint32 // our producer index; the shared word is a copy
	txCons   uint32 // last consumer index seen; refreshed only when the ring looks full
	wakePeer signal

	// Consumer state; only the receiving goroutine touches it.
	rx     ring
	rxCons uint32 // our consumer index; the shared word is a copy
	rxProd uint32 // last producer index seen
	sleep  signal
	idle   bool // the last Wait timed out: do not spin in the next
	unread bool // WaitAny left the peer's wake-up unread; Arm reads it
	// patient: Arm announces a sleep that lazy messages do not end
	// (SetPatient).
	patient bool

	// key names this Endpoint's descriptor in a poller's record of what it
	// has armed (block_unsafe.go): unique in the process, never reused,
	// unlike the descriptor's number.
	key uint64

	broken atomic.Pointer[error] // set once, by either goroutine; see fail
	kicked atomic.Bool           // Wake was called: the next or current Wait returns
	closed bool
	unmap  func() error

	sent, received, wakeups, sleeps atomic.Uint64
}

// endpointKeys numbers the process's Endpoints (Endpoint.key).
var endpointKeys atomic.Uint64

func newEndpoint(tx, rx ring, sleep, wakePeer signal) *Endpoint {
	e := &Endpoint{tx: tx, rx: rx, sleep: sleep, wakePeer: wakePeer, key: endpointKeys.Add(1)}
	// Pick up where the previous user of this side left off; for a fresh
	// channel all four are zero.
	e.txProd, e.txCons = tx.loadProd(), tx.loadCons()
	e.rxCons, e.rxProd = rx.loadCons(), rx.loadProd()
	return e
}

// Send enqueues as many of msgs as fit and returns that number, publishing
// them with one index store; it wakes the peer, with one eventfd write, only
// if the peer announced it sleeps. It returns 0 on a closed or broken
// Endpoint.
func (e *Endpoint) Send(msgs ...Msg) int {
	return e.send(msgs, false)
}

// send publishes msgs and wakes the peer if it sleeps (lazy: and did not
// sleep patiently).
func (e *Endpoint) send(msgs []Msg, lazy bool) int {
	if e.closed || len(msgs) == 0 || e.broken.Load() != nil {
		return 0
	}
	size := uint32(len(e.tx.slots))
	free := size - (e.txProd - e.txCons)
	if free < uint32(len(msgs)) {
		c := e.tx.loadCons()
		if e.txProd-c > size { // the peer claims to have read unsent slots
			e.fail(fmt.Errorf("%w: send ring consumer %d, producer %d", ErrCorrupt, c, e.txProd))
			return 0
		}
		e.txCons = c
		free = size - (e.txProd - c)
	}
	n := min(uint32(len(msgs)), free)
	if n == 0 {
		return 0
	}
	i := e.txProd & e.tx.mask
	k := copy(e.tx.slots[i:], msgs[:n]) // up to the end of the ring...
	copy(e.tx.slots, msgs[k:n])         // ...and the rest from its start
	e.txProd += n
	e.tx.storeProd(e.txProd) // publish: the slots above are visible to whoever sees this
	if (lazy && e.tx.takeImpatient()) || (!lazy && e.tx.takeSleeping()) {
		e.wakeups.Add(1)
		if err := e.wakePeer.wake(); err != nil {
			e.fail(fmt.Errorf("%w: waking the peer: %v", ErrBroken, err))
		}
	}
	e.sent.Add(uint64(n))
	return int(n)
}

// SendLazy is Send for messages the peer need not wake for: it wakes a
// sleeping peer only if that peer did not sleep patiently (SetPatient).
// A patient peer finds them when something else wakes it, or when it
// next sleeps impatiently: its Arm sees them waiting. A sender uses it
// for replies that only give back buffers, whose owner asks for them by
// sleeping impatiently when it runs short.
func (e *Endpoint) SendLazy(msgs ...Msg) int {
	return e.send(msgs, true)
}

// Recv moves up to len(buf) received messages into buf and returns how
// many; it never blocks. It returns 0 on a closed or broken Endpoint (Wait
// says why).
func (e *Endpoint) Recv(buf []Msg) int {
	if e.closed || len(buf) == 0 || e.broken.Load() != nil {
		return 0
	}
	avail := e.rxProd - e.rxCons
	if avail < uint32(len(buf)) && !e.refresh() {
		return 0
	}
	n := min(uint32(len(buf)), e.rxProd-e.rxCons)
	if n == 0 {
		return 0
	}
	i := e.rxCons & e.rx.mask
	k := copy(buf[:n], e.rx.slots[i:])
	copy(buf[k:n], e.rx.slots)
	e.rxCons += n
	e.rx.storeCons(e.rxCons) // hand the slots back to the producer
	e.received.Add(uint64(n))
	return int(n)
}

// refresh reloads the peer's producer index, checking it; false means the
// Endpoint is now broken.
func (e *Endpoint) refresh() bool {
	p := e.rx.loadProd()
	if p-e.rxCons > uint32(len(e.rx.slots)) {
		e.fail(fmt.Errorf("%w: receive ring producer %d, consumer %d", ErrCorrupt, p, e.rxCons))
		return false
	}
	e.rxProd = p
	return true
}

// ready reports whether a message is waiting.
func (e *Endpoint) ready() bool {
	if e.rxProd != e.rxCons {
		return true
	}
	return e.refresh() && e.rxProd != e.rxCons
}

// Wait blocks until a message can be received or timeout passes; a negative
// timeout waits forever. It returns nil when a message is ready,
// os.ErrDeadlineExceeded on timeout, ErrClosed, or the error that broke the
// Endpoint. It spins briefly before it sleeps.
func (e *Endpoint) Wait(timeout time.Duration) error {
	if e.closed {
		return ErrClosed
	}
	err := e.wait(timeout)
	e.idle = errors.Is(err, os.ErrDeadlineExceeded)
	return err
}

func (e *Endpoint) wait(timeout time.Duration) error {
	spin := spinChecks
	if e.idle {
		spin = 1
	}
	if e.kicked.Swap(false) {
		return nil
	}
	for i := 0; i < spin; i++ {
		if e.ready() {
			return nil
		}
		if err := e.Err(); err != nil {
			return err
		}
		if i%256 == 255 {
			runtime.Gosched() // let a sender in this process run
		}
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if e.kicked.Swap(false) {
			return nil
		}
		if ready, err := e.Arm(); ready || err != nil {
			return err
		}
		left := time.Duration(-1)
		if timeout >= 0 {
			left = max(time.Until(deadline), 0)
		}
		e.sleeps.Add(1)
		err := e.sleep.sleep(left)
		e.rx.clearSleeping()
		if e.ready() {
			return nil
		}
		if err := e.Err(); err != nil {
			return err
		}
		if err != nil {
			return err
		}
		// A spurious wake-up (see the package doc): sleep again.
	}
}

// Wake makes the Wait in progress, or the next one, return as if a
// message had come: another goroutine of the receiving process has news for
// the waiter (a new generation of the peer, a close) and the waiter can
// then sleep without a timeout to look at its other sources.
func (e *Endpoint) Wake() error {
	e.kicked.Store(true)
	return e.sleep.wake()
}

// Arm prepares to sleep in a caller's own poll loop: it announces sleep and
// re-checks the ring. If it returns true a message is ready and the caller
// must not block (the announcement is withdrawn); so it must not on an
// error, the one that broke the Endpoint (or ErrClosed), which no message
// will ever follow. Otherwise the caller may poll Fd for reading and must
// call Disarm once it wakes, before Recv.
func (e *Endpoint) Arm() (ready bool, err error) {
	if e.closed {
		return false, ErrClosed
	}
	if e.unread {
		// The wake-up that ended WaitAny's last sleep, read now rather
		// than between the wake-up and the messages (wait.go).
		e.sleep.drain()
		e.unread = false
	}
	e.rx.setSleeping(e.patient)
	if e.ready() {
		e.rx.clearSleeping()
		return true, nil
	}
	if err := e.Err(); err != nil {
		e.rx.clearSleeping()
		return false, err
	}
	return false, nil
}

// SetPatient chooses how the next sleeps (Arm) are announced: patient,
// a message the peer sends lazily (SendLazy) does not wake this side; it
// waits for a message that does, or for an impatient sleep, whose Arm
// finds it. Call it from the receiving goroutine.
func (e *Endpoint) SetPatient(patient bool) { e.patient = patient }

// Disarm withdraws Arm's announcement and consumes a pending wake-up.
func (e *Endpoint) Disarm() {
	if e.closed {
		return
	}
	e.rx.clearSleeping()
	e.sleep.drain()
}

// Fd is the descriptor that becomes readable when the peer wakes this side
// (after Arm), for a poll loop over several channels; -1 for an in-process
// Endpoint.
func (e *Endpoint) Fd() int { return e.sleep.fd() }

// Err is the error that broke the Endpoint, or nil.
func (e *Endpoint) Err() error {
	if p := e.broken.Load(); p != nil {
		return *p
	}
	return nil
}

// Break breaks the Endpoint because its user found that the peer broke the
// protocol: why says how, and Err then wraps ErrProtocol. It keeps the
// first error of an Endpoint already broken.
func (e *Endpoint) Break(why string) { e.fail(fmt.Errorf("%w: %s", ErrProtocol, why)) }

// fail breaks the Endpoint with err, unless it is already broken.
func (e *Endpoint) fail(err error) { e.broken.CompareAndSwap(nil, &err) }

// Stats are an Endpoint's counters.
type Stats struct {
	Sent, Received uint64 // messages
	Wakeups        uint64 // times this side woke its peer (eventfd writes)
	Sleeps         uint64 // times this side blocked in Wait
}

// Stats returns the counters so far.
func (e *Endpoint) Stats() Stats {
	return Stats{Sent: e.sent.Load(), Received: e.received.Load(), Wakeups: e.wakeups.Load(), Sleeps: e.sleeps.Load()}
}

// Close unmaps the region and closes the eventfds.
func (e *Endpoint) Close() error {
	if e.closed {
		return ErrClosed
	}
	e.closed = true
	e.tx, e.rx = ring{}, ring{}
	var first error
	for _, err := range []error{e.sleep.close(), e.wakePeer.close()} {
		if err != nil && first == nil {
			first = err
		}
	}
	if e.unmap != nil {
		if err := e.unmap(); err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		return fmt.Errorf("channel: close: %w", first)
	}
	return nil
}

// NewLocal returns the two sides of an in-process channel with the same
// rings and protocol as a shared one, woken through Go channels: for tests
// and for components that share a process.
func NewLocal(slots int) (a, b *Endpoint, err error) {
	if !validSlots(slots) {
		return nil, nil, fmt.Errorf("channel: new local: %d slots, want a power of two in [%d, %d]", slots, MinSlots, MaxSlots)
	}
	mem := alignedBytes(regionSize(slots))
	writeRegionHeader(mem, slots)
	r0, r1 := mapRing(mem, ringOffset(0, slots), slots), mapRing(mem, ringOffset(1, slots), slots)
	wa, wb := make(chanSignal, 1), make(chanSignal, 1)
	return newEndpoint(r0, r1, wa, wb), newEndpoint(r1, r0, wb, wa), nil
}
