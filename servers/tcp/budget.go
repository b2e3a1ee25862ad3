package tcp

// Bounds on what traffic can make the TCP server hold (issue 11): the
// number of connections (Config.MaxConns), the memory of their buffers
// (Config.BufferBudget) and the connections in TIME-WAIT
// (Config.MaxTimeWait). A new connection beyond the first two is refused —
// a SYN to a listener is answered with a SYN cookie, which keeps no state,
// and the cookie's ACK with an RST if there is still no room; Connect fails
// with ErrNoBuffers —, and the oldest TIME-WAIT connection is recycled
// first to make room. Connections already there are never touched: each
// has its buffers' floor reserved when it is made, and grows beyond it
// only as far as the budget allows.

// Default bounds.
const (
	DefaultMaxConns     = 8192
	DefaultBufferBudget = 128 << 20
	DefaultMaxTimeWait  = 4096
)

// ringFloor is what each of a connection's two buffers may always hold:
// it is reserved in the budget when the connection is made.
const ringFloor = 4096

// connReserve is a connection's reservation: both buffers' floor.
const connReserve = 2 * ringFloor

// budget is the buffer memory every connection of a Table shares. used
// counts the bytes charged to it: each connection's reserve, what its
// buffers grew beyond it, and its out-of-order data.
type budget struct {
	limit int
	used  int
}

// free is what may still be charged.
func (b *budget) free() int { return max(b.limit-b.used, 0) }

// take charges n bytes if they fit.
func (b *budget) take(n int) bool {
	if n > b.free() {
		return false
	}
	b.used += n
	return true
}

// give returns n bytes charged before.
func (b *budget) give(n int) { b.used -= n }

// pressed reports that more than half the budget is in use: buffers that
// empty then give back what they grew beyond their floor.
func (b *budget) pressed() bool { return b.used > b.limit/2 }

// admit makes room for one more connection, or says why there is none:
// ErrTooManyConns at Config.MaxConns (after recycling the oldest TIME-WAIT
// connection, if any), ErrNoBuffers when the budget cannot take its
// reserve. It counts the refusal.
func (t *Table) admit() error {
	if t.Conns() >= t.cfg.MaxConns && t.timeWait.len() > 0 {
		t.recycleTimeWait()
	}
	switch {
	case t.Conns() >= t.cfg.MaxConns:
		t.c.ConnsRefused++
		return ErrTooManyConns
	case t.budget.free() < connReserve:
		t.c.BudgetRefused++
		return ErrNoBuffers
	}
	return nil
}

// reserve charges a new connection's buffer floor (admit said it fits).
func (e *Endpoint) reserve() {
	e.t.budget.used += connReserve
	e.snd.b, e.snd.paid, e.snd.m = &e.t.budget, ringFloor, e.t.mem
	e.rcv.b, e.rcv.paid, e.rcv.m = &e.t.budget, ringFloor, e.t.mem
}

// release gives back everything e charged: its buffers (which a closed
// connection's reader may still drain; they are no longer counted) and its
// out-of-order data.
func (e *Endpoint) release() {
	e.snd.release()
	e.rcv.release()
	e.setOOO(nil, 0)
}

// setOOO replaces the out-of-order queue, charging the change in its bytes
// (a shrink always succeeds). It reports false, changing nothing, when the
// budget cannot take the growth.
func (e *Endpoint) setOOO(ooo []oooSeg, n int) bool {
	if d := n - e.oooLen; d > 0 && !e.t.budget.take(d) {
		return false
	} else if d < 0 {
		e.t.budget.give(-d)
	}
	e.ooo, e.oooLen = ooo, n
	return true
}

// BufferBytes is what the connections' buffers have charged to the budget
// (Config.BufferBudget): reserves, growth and out-of-order data.
func (t *Table) BufferBytes() int { return t.budget.used }
