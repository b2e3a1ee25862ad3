package syscallsrv

import (
	"slices"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/kernel/wiring"
	"keepnet/servers/ops"
)

// rig is a SYSCALL server with an application ("app", owning its pool) and
// the udp transport played by the test, over in-process channels.
type rig struct {
	t       *testing.T
	s       *Server
	io      *pool.Pool
	appPool *pool.Pool
	app     *channel.Endpoint // the application's end
	udp     *channel.Endpoint // the transport's end
	nextID  uint64
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, nextID: 1}
	var err error
	if r.io, err = pool.Create(1, 16, 2048); err != nil {
		t.Fatal(err)
	}
	if r.appPool, err = pool.Create(2, 16, 2048); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.io.Close(); r.appPool.Close() })
	r.newGeneration(1)
	return r
}

// newGeneration replaces the server by generation gen, which knows nothing
// of its predecessor (as after a crash); attach the neighbours again.
func (r *rig) newGeneration(gen int) {
	r.s = newServer(Options{Name: "syscall", Transports: map[ops.Network]string{ops.UDP: "udp"}, Apps: []string{"other", "app"}}, r.io, gen)
}

// isOrphanClose reports whether m closes the sockets of generations of
// "app" (index 2) before gen.
func isOrphanClose(m channel.Msg, gen int) bool {
	return ops.OpOf(m) == ops.OpCloseRange && m.Arg[0] == 2<<48 && m.Arg[1] == 2<<48|uint64(gen)<<32
}

// connectApp attaches generation gen of the application.
func (r *rig) connectApp(gen int) {
	mine, theirs, err := channel.NewLocal(256)
	if err != nil {
		r.t.Fatal(err)
	}
	r.app = theirs
	r.s.Attach(&wiring.Peer{Name: "app", Generation: gen, Port: mine, Pools: []*pool.Pool{r.appPool}})
	r.run()
}

// connectUDP attaches generation gen of the transport.
func (r *rig) connectUDP(gen int) {
	mine, theirs, err := channel.NewLocal(256)
	if err != nil {
		r.t.Fatal(err)
	}
	r.udp = theirs
	r.s.Attach(&wiring.Peer{Name: "udp", Generation: gen, Port: mine, Pools: nil})
	r.run()
}

// appSends sends a request from the application and runs the server.
func (r *rig) appSends(op ops.Op, args ...uint64) uint64 {
	return r.appSendsMsg(op.Msg(args...))
}

// appSendsAddr sends a request on socket id with address a.
func (r *rig) appSendsAddr(op ops.Op, id uint64, a ops.Addr) uint64 {
	m := op.Msg(id)
	ops.PutAddr(&m, ops.AtArg1, a)
	return r.appSendsMsg(m)
}

// appSendsMsg sends request m from the application and runs the server.
func (r *rig) appSendsMsg(m channel.Msg) uint64 {
	m.ID = r.nextID
	r.nextID++
	if op := ops.OpOf(m); op == ops.OpSendTo || op == ops.OpRecvFrom {
		ref, ok := r.appPool.Alloc()
		if !ok {
			r.t.Fatal("app pool empty")
		}
		if op == ops.OpSendTo {
			b, _ := r.appPool.Bytes(ref)
			ref.Len = uint32(copy(b, "hello, transport"))
		}
		m.Ref = ref
	}
	r.app.Send(m)
	r.run()
	return m.ID
}

func (r *rig) run() {
	for i := 0; i < 4; i++ {
		r.s.poll()
	}
}

func recvAll(e *channel.Endpoint) []channel.Msg {
	var out []channel.Msg
	buf := make([]channel.Msg, 64)
	for {
		n := e.Recv(buf)
		if n == 0 {
			return out
		}
		out = append(out, buf[:n]...)
	}
}

// udpAnswers replies to every request the transport received, letting
// answer adjust each reply, and returns the requests.
func (r *rig) udpAnswers(answer func(req channel.Msg, reply *channel.Msg)) []channel.Msg {
	reqs := recvAll(r.udp)
	for _, q := range reqs {
		rep := q
		ops.SetStatus(&rep, ops.StatusOK)
		if answer != nil {
			answer(q, &rep)
		}
		r.udp.Send(rep)
	}
	r.run()
	return reqs
}

func TestForwardingBothWays(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	r.connectUDP(1)
	if reqs := r.udpAnswers(nil); len(reqs) != 1 || !isOrphanClose(reqs[0], 1) {
		t.Fatalf("the transport's first request = %+v, want one OpCloseRange of app's generations before 1", reqs)
	}

	open := r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	bind := r.appSendsAddr(ops.OpBind, 7, ops.MakeAddr(ipAny, 53))
	reqs := r.udpAnswers(func(q channel.Msg, rep *channel.Msg) {
		if ops.OpOf(q) == ops.OpBind {
			ops.PutAddr(rep, ops.AtArg0, ops.MakeAddr(ipAny, 53))
		}
	})
	if len(reqs) != 2 || ops.OpOf(reqs[0]) != ops.OpOpen || ops.OpOf(reqs[1]) != ops.OpBind || reqs[0].Arg[0] != reqs[1].Arg[0] || reqs[0].Arg[0] == 7 {
		t.Fatalf("forwarded %+v, want OpOpen and OpBind on one transport socket id of SYSCALL's own", reqs)
	}
	if got := ops.GetAddr(reqs[1], ops.AtArg1); got != ops.MakeAddr(ipAny, 53) {
		t.Errorf("forwarded OpBind to %v, want %v", got, ops.MakeAddr(ipAny, 53))
	}
	replies := recvAll(r.app)
	if len(replies) != 2 || replies[0].ID != open || replies[1].ID != bind || ops.GetAddr(replies[1], ops.AtArg0).Port() != 53 {
		t.Fatalf("app got %+v, want its open and bind answered, bound to :53", replies)
	}

	// A send: the bytes travel from the app's pool to SYSCALL's.
	send := r.appSendsAddr(ops.OpSendTo, 7, ops.MakeAddr(peerIP, 9))
	reqs = r.udpAnswers(nil)
	if len(reqs) != 1 || ops.OpOf(reqs[0]) != ops.OpSendTo || ops.GetAddr(reqs[0], ops.AtArg1) != ops.MakeAddr(peerIP, 9) {
		t.Fatalf("forwarded %+v, want OpSendTo to %v", reqs, ops.MakeAddr(peerIP, 9))
	}
	if b, _ := r.io.Bytes(reqs[0].Ref); string(b) != "hello, transport" {
		t.Errorf("the transport reads %q from syscall.io, want the app's bytes", b)
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != send || ops.StatusOf(got[0]) != ops.StatusOK {
		t.Errorf("app got %+v, want its send answered", got)
	}

	// A receive: the transport fills SYSCALL's buffer, the app gets a copy.
	recv := r.appSends(ops.OpRecvFrom, 7)
	r.udpAnswers(func(q channel.Msg, rep *channel.Msg) {
		b, _ := r.io.Bytes(q.Ref)
		rep.Ref.Len = uint32(copy(b, "a datagram"))
		ops.PutAddr(rep, ops.AtArg0, ops.MakeAddr(peerIP, 9))
	})
	got := recvAll(r.app)
	if len(got) != 1 || got[0].ID != recv || got[0].Ref.Len != 10 || ops.GetAddr(got[0], ops.AtArg0) != ops.MakeAddr(peerIP, 9) {
		t.Fatalf("app got %+v, want its receive answered with 10 bytes from :9", got)
	}
	if b, _ := r.appPool.Bytes(got[0].Ref); string(b) != "a datagram" {
		t.Errorf("app buffer holds %q, want %q", b, "a datagram")
	}
	if r.io.Available() != r.io.Len() {
		t.Errorf("syscall.io has %d of %d buffers free, want all back", r.io.Available(), r.io.Len())
	}
	// Both ways the bytes were copied once more than the design asks,
	// and the counters say so.
	if st := r.s.stats; st.CopiedDown != 16 || st.CopiedUp != 10 {
		t.Errorf("copied %d bytes down and %d up, want 16 and 10", st.CopiedDown, st.CopiedUp)
	}
}

// An application's requests that arrive before its transport joined are
// held and replayed when it does.
func TestHeldUntilTransport(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	open := r.appSends(ops.OpOpen, 1, uint64(ops.UDP))
	if got := recvAll(r.app); len(got) != 0 {
		t.Fatalf("app got %+v before any transport, want its open held", got)
	}
	r.connectUDP(1)
	r.run()
	reqs := r.udpAnswers(nil)
	if len(reqs) != 2 || !isOrphanClose(reqs[0], 1) || ops.OpOf(reqs[1]) != ops.OpOpen {
		t.Fatalf("transport got %+v, want OpCloseRange then the held OpOpen", reqs)
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != open || ops.StatusOf(got[0]) != ops.StatusOK {
		t.Errorf("app got %+v, want its open answered", got)
	}
}

// A transport restart: the socket is opened again on the new generation
// first (it keeps only the sockets it has records of), then the unfinished
// receive is re-issued with a new id; the old generation's late answer is
// ignored.
func TestTransportRestartResubmits(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	r.udpAnswers(nil)
	recvAll(r.app)
	recv := r.appSends(ops.OpRecvFrom, 7)
	old := recvAll(r.udp) // posted, never answered: then udp dies
	if len(old) != 1 {
		t.Fatalf("transport got %+v, want the receive", old)
	}
	oldUDP := r.udp
	r.connectUDP(2)
	oldUDP.Send(channel.Msg{ID: old[0].ID, Op: old[0].Op, Status: int32(ops.StatusOK)}) // a ghost
	r.run()
	reqs := recvAll(r.udp)
	if len(reqs) != 2 || ops.OpOf(reqs[0]) != ops.OpOpen || reqs[0].Arg[0] != old[0].Arg[0] || ops.Network(reqs[0].Arg[1]) != ops.UDP {
		t.Fatalf("new transport got %+v, want the socket's OpOpen first", reqs)
	}
	r.udp.Send(channel.Msg{ID: reqs[0].ID, Op: reqs[0].Op}) // opened
	reqs = reqs[1:]
	if ops.OpOf(reqs[0]) != ops.OpRecvFrom || reqs[0].ID <= old[0].ID {
		t.Fatalf("new transport got %+v, want the receive again with a higher id than %d", reqs, old[0].ID)
	}
	if got := recvAll(r.app); len(got) != 0 {
		t.Fatalf("app got %+v from the dead transport, want nothing yet", got)
	}
	b, _ := r.io.Bytes(reqs[0].Ref)
	n := copy(b, "after the restart")
	r.udp.Send(channel.Msg{ID: reqs[0].ID, Op: reqs[0].Op, Ref: pool.Ref{Pool: reqs[0].Ref.Pool, Off: reqs[0].Ref.Off, Len: uint32(n)}})
	r.run()
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != recv || got[0].Ref.Len != uint32(n) {
		t.Errorf("app got %+v, want its original receive answered by the new transport", got)
	}
}

// An application restart closes its predecessor's sockets in the transport.
func TestApplicationRestartClosesItsSockets(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	open := r.udpAnswers(nil)
	r.appSends(ops.OpRecvFrom, 7)
	posted := recvAll(r.udp)
	r.connectApp(2)
	r.run()
	reqs := recvAll(r.udp)
	if len(reqs) != 1 || !isOrphanClose(reqs[0], 2) || open[0].Arg[0] < reqs[0].Arg[0] || open[0].Arg[0] >= reqs[0].Arg[1] {
		t.Fatalf("transport got %+v, want an OpCloseRange around socket %#x", reqs, open[0].Arg[0])
	}
	// The old receive's late answer finds nobody and frees its buffer.
	r.udp.Send(channel.Msg{ID: posted[0].ID, Op: posted[0].Op, Status: int32(ops.StatusClosed)})
	r.udp.Send(channel.Msg{ID: reqs[0].ID, Op: reqs[0].Op})
	r.run()
	if got := recvAll(r.app); len(got) != 0 {
		t.Errorf("the new application generation got %+v, want nothing of its predecessor's", got)
	}
	if r.io.Available() != r.io.Len() {
		t.Errorf("syscall.io has %d of %d buffers free, want all back", r.io.Available(), r.io.Len())
	}
}

// A stream listener's accept: the application names the connection to come,
// SYSCALL names it towards the transport, and later operations on the
// application's name reach the transport's.
func TestAcceptNamesTheConnection(t *testing.T) {
	r := newListeningRig(t)

	accept := r.appSends(ops.OpAccept, 1, 9)
	reqs := r.udpAnswers(func(q channel.Msg, rep *channel.Msg) {
		ops.PutAddr(rep, ops.AtArg0, ops.MakeAddr(peerIP, 40000))
		ops.PutAddr(rep, ops.AtArg2, ops.MakeAddr(peerIP, 80))
	})
	if len(reqs) != 1 || ops.OpOf(reqs[0]) != ops.OpAccept || reqs[0].Arg[1] == 9 || reqs[0].Arg[1] == 0 {
		t.Fatalf("forwarded %+v, want OpAccept naming the connection with SYSCALL's own id", reqs)
	}
	connTID := reqs[0].Arg[1]
	got := recvAll(r.app)
	if len(got) != 1 || got[0].ID != accept || ops.GetAddr(got[0], ops.AtArg0) != ops.MakeAddr(peerIP, 40000) || ops.GetAddr(got[0], ops.AtArg2) != ops.MakeAddr(peerIP, 80) {
		t.Fatalf("app got %+v, want its accept answered with both addresses", got)
	}
	r.appSends(ops.OpShutdown, 9)
	if reqs := recvAll(r.udp); len(reqs) != 1 || ops.OpOf(reqs[0]) != ops.OpShutdown || reqs[0].Arg[0] != connTID {
		t.Errorf("shutdown of the app's connection 9 forwarded as %+v, want it on socket %d", reqs, connTID)
	}
	// A socket option (issue 19) goes through with its option and value.
	r.appSends(ops.OpSetOption, 9, uint64(ops.OptKeepAliveIdle), uint64(2*time.Second))
	if reqs := recvAll(r.udp); len(reqs) != 1 || ops.OpOf(reqs[0]) != ops.OpSetOption || reqs[0].Arg[0] != connTID ||
		ops.Option(reqs[0].Arg[1]) != ops.OptKeepAliveIdle || reqs[0].Arg[2] != uint64(2*time.Second) {
		t.Errorf("OpSetOption on the app's connection 9 forwarded as %+v, want it on socket %d with its option and value", reqs, connTID)
	}
}

// A readiness receive (a stream OpRecvFrom with no buffer) is forwarded
// without a syscall.io buffer and answered without a copy; a FlagNoWait
// receive keeps its flag on the way to the transport.
func TestReadinessReceiveTakesNoBuffer(t *testing.T) {
	r := newRig(t)
	r.s.o.Transports[ops.TCP] = "udp" // the rig's transport plays TCP
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 3, uint64(ops.TCP))
	r.udpAnswers(nil)
	recvAll(r.app)

	// More readiness receives than syscall.io has buffers.
	var ids []uint64
	for range r.io.Len() + 4 {
		m := channel.Msg{ID: r.nextID, Op: uint16(ops.OpRecvFrom), Arg: [4]uint64{3}}
		r.nextID++
		r.app.Send(m)
		ids = append(ids, m.ID)
	}
	r.run()
	reqs := recvAll(r.udp)
	if len(reqs) != len(ids) {
		t.Fatalf("transport got %d requests, want the %d readiness receives", len(reqs), len(ids))
	}
	for _, q := range reqs {
		if ops.OpOf(q) != ops.OpRecvFrom || !q.Ref.IsZero() {
			t.Fatalf("forwarded %+v, want an OpRecvFrom with a zero Ref", q)
		}
	}
	if got := r.io.Available(); got != r.io.Len() {
		t.Errorf("syscall.io has %d of %d buffers free with readiness receives posted, want all", got, r.io.Len())
	}
	if st := r.s.stats; st.NoBuffer != 0 {
		t.Errorf("NoBuffer = %d, want 0", st.NoBuffer)
	}
	for _, q := range reqs {
		rep := q
		ops.SetStatus(&rep, ops.StatusOK) // readable
		r.udp.Send(rep)
	}
	r.run()
	got := recvAll(r.app)
	if len(got) != len(ids) {
		t.Fatalf("app got %d replies, want %d", len(got), len(ids))
	}
	for i, g := range got {
		if g.ID != ids[i] || ops.StatusOf(g) != ops.StatusOK || !g.Ref.IsZero() {
			t.Errorf("reply %d = %+v, want id %d, ok, zero Ref", i, g, ids[i])
		}
	}

	// FlagNoWait travels; "would block" (Ref.Len 0) comes back as such.
	ref, _ := r.appPool.Alloc()
	m := channel.Msg{ID: r.nextID, Op: uint16(ops.OpRecvFrom), Flags: ops.FlagNoWait, Ref: ref, Arg: [4]uint64{3}}
	r.nextID++
	r.app.Send(m)
	r.run()
	reqs = r.udpAnswers(func(q channel.Msg, rep *channel.Msg) { rep.Ref.Len, rep.Flags = 0, 0 })
	if len(reqs) != 1 || reqs[0].Flags != ops.FlagNoWait || reqs[0].Ref.IsZero() {
		t.Fatalf("forwarded %+v, want one OpRecvFrom with FlagNoWait and a syscall.io buffer", reqs)
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != m.ID || ops.StatusOf(got[0]) != ops.StatusOK || got[0].Ref.Len != 0 || got[0].Ref.Off != ref.Off || got[0].Flags != 0 {
		t.Errorf("app got %+v, want its receive answered ok with 0 bytes in its buffer, no flags", got)
	}
	if got := r.io.Available(); got != r.io.Len() {
		t.Errorf("syscall.io has %d of %d buffers free, want all back", got, r.io.Len())
	}
}

// answered returns the status of the application's answer to request id.
func (r *rig) answered(id uint64) (ops.Status, bool) {
	for _, m := range recvAll(r.app) {
		if m.ID == id {
			return ops.StatusOf(m), true
		}
	}
	return 0, false
}

// An application past MaxSocketsPerApp gets StatusTooManySockets (EMFILE)
// for an OpOpen or an OpAccept; a close makes room again.
func TestSocketsPerAppAreBounded(t *testing.T) {
	r := newRig(t)
	r.s.maxSockets = 2
	r.s.o.Transports[ops.TCP] = "udp"
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 1, uint64(ops.TCP))
	r.appSends(ops.OpOpen, 2, uint64(ops.UDP))
	r.udpAnswers(nil)
	recvAll(r.app)
	if st, ok := r.answered(r.appSends(ops.OpOpen, 3, uint64(ops.UDP))); !ok || st != ops.StatusTooManySockets {
		t.Fatalf("a third OpOpen answered %v (%v), want StatusTooManySockets", st, ok)
	}
	if st, ok := r.answered(r.appSends(ops.OpAccept, 1, 9)); !ok || st != ops.StatusTooManySockets {
		t.Fatalf("an OpAccept with two sockets answered %v (%v), want StatusTooManySockets", st, ok)
	}
	if n := len(recvAll(r.udp)); n != 0 {
		t.Fatalf("%d refused requests reached the transport", n)
	}
	r.appSends(ops.OpClose, 2)
	r.udpAnswers(nil)
	recvAll(r.app)
	id := r.appSends(ops.OpOpen, 3, uint64(ops.UDP))
	r.udpAnswers(nil)
	if st, ok := r.answered(id); !ok || st != ops.StatusOK {
		t.Errorf("OpOpen after a close answered %v (%v), want StatusOK", st, ok)
	}
	if r.s.stats.SocketsRefused != 2 {
		t.Errorf("SocketsRefused = %d, want 2", r.s.stats.SocketsRefused)
	}
}

// An application with MaxPendingPerApp requests unanswered gets
// StatusNoBuffers (ENOBUFS) for the next, but for OpClose.
func TestPendingPerAppAreBounded(t *testing.T) {
	r := newRig(t)
	r.s.maxPending = 2
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 1, uint64(ops.UDP))
	r.appSends(ops.OpOpen, 2, uint64(ops.UDP)) // both unanswered
	if st, ok := r.answered(r.appSends(ops.OpOpen, 3, uint64(ops.UDP))); !ok || st != ops.StatusNoBuffers {
		t.Fatalf("a third request with two pending answered %v (%v), want StatusNoBuffers", st, ok)
	}
	r.appSends(ops.OpClose, 1) // never refused
	if reqs := recvAll(r.udp); len(reqs) != 3 || ops.OpOf(reqs[2]) != ops.OpClose {
		t.Fatalf("forwarded %+v, want two opens and the close", reqs)
	}
	if r.s.stats.PendingRefused != 1 {
		t.Errorf("PendingRefused = %d, want 1", r.s.stats.PendingRefused)
	}
}

// Transport socket ids are TID(app index, app generation, app socket id):
// a new SYSCALL generation computes the ones its predecessor used.
func TestTIDIsAFunctionOfTheApplicationsSocket(t *testing.T) {
	r := newRig(t)
	r.connectApp(3)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	first := r.udpAnswers(nil)
	if want := uint64(2<<48 | 3<<32 | 7); len(first) != 1 || first[0].Arg[0] != want {
		t.Fatalf("forwarded %+v, want OpOpen of transport socket %#x", first, want)
	}
	r.newGeneration(2)
	r.connectApp(3)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpSendTo, 7) // no record: refused
	if got := recvAll(r.app); len(got) != 1 || ops.StatusOf(got[0]) != ops.StatusNoSocket {
		t.Fatalf("app got %+v, want StatusNoSocket before it adopts", got)
	}
	adopt := r.appSends(ops.OpAdopt, 7, uint64(ops.UDP))
	reqs := r.udpAnswers(nil)
	if len(reqs) != 1 || ops.OpOf(reqs[0]) != ops.OpAdopt || reqs[0].Arg[0] != first[0].Arg[0] {
		t.Fatalf("new generation forwarded %+v, want OpAdopt of transport socket %#x", reqs, first[0].Arg[0])
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != adopt || ops.StatusOf(got[0]) != ops.StatusOK {
		t.Fatalf("app got %+v, want its adopt answered", got)
	}
	r.appSends(ops.OpRecvFrom, 7)
	if reqs := recvAll(r.udp); len(reqs) != 1 || reqs[0].Arg[0] != first[0].Arg[0] {
		t.Fatalf("forwarded %+v, want the receive on %#x", reqs, first[0].Arg[0])
	}
	// Ids that do not fit are refused.
	r.appSends(ops.OpOpen, 1<<32, uint64(ops.UDP))
	if got := recvAll(r.app); len(got) != 1 || ops.StatusOf(got[0]) != ops.StatusInvalid {
		t.Fatalf("app got %+v, want its open of id 1<<32 refused StatusInvalid", got)
	}
}

// An adopt the transport does not know (StatusNoSocket) leaves no record.
func TestAdoptOfAnUnknownSocket(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpAdopt, 5, uint64(ops.UDP))
	r.udpAnswers(func(_ channel.Msg, rep *channel.Msg) { ops.SetStatus(rep, ops.StatusNoSocket) })
	if got := recvAll(r.app); len(got) != 1 || ops.StatusOf(got[0]) != ops.StatusNoSocket {
		t.Fatalf("app got %+v, want StatusNoSocket", got)
	}
	r.appSends(ops.OpRecvFrom, 5)
	if got := recvAll(r.app); len(got) != 1 || ops.StatusOf(got[0]) != ops.StatusNoSocket {
		t.Fatalf("app got %+v, want its receive refused: no socket 5", got)
	}
}

// A new SYSCALL generation whose transport joins after the applications
// closes the sockets of their dead generations, not of the live ones.
func TestOrphansClosedWhenTheTransportJoins(t *testing.T) {
	r := newRig(t)
	r.connectApp(4)
	r.connectUDP(2)
	reqs := r.udpAnswers(nil)
	if len(reqs) != 1 || !isOrphanClose(reqs[0], 4) {
		t.Fatalf("transport got %+v, want OpCloseRange of app's generations 0..3", reqs)
	}
	if live, _ := TID(2, 4, 1); live < reqs[0].Arg[1] {
		t.Errorf("the range [%#x, %#x) closes the live generation's socket %#x", reqs[0].Arg[0], reqs[0].Arg[1], live)
	}
}

// TestCorruptBufferStopsSyscall: syscall's own record of a receive's
// buffer is checked when the answer comes; a record that names no buffer of
// syscall.io is our corruption, and syscall stops (its restart clears it)
// instead of failing the application's connection. A transport's answer
// that claims more bytes than the buffer holds is its error: the
// application's receive fails and syscall goes on.
func TestCorruptBufferStopsSyscall(t *testing.T) {
	r := newRig(t)
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	r.udpAnswers(nil)
	recvAll(r.app)

	recv := r.appSends(ops.OpRecvFrom, 7)
	r.udpAnswers(func(q channel.Msg, rep *channel.Msg) { rep.Ref.Len = 4096 })
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != recv || ops.StatusOf(got[0]) != ops.StatusError {
		t.Errorf("app got %+v for a reply of 4096 bytes into a 2048-byte buffer, want its receive failed", got)
	}

	r.appSends(ops.OpRecvFrom, 7)
	for _, f := range r.s.fwds {
		f.ref.Pool = 99 // what a wrong-buffer fault does to it
	}
	defer func() {
		// The panic, or the one of the deferred free of the same record.
		if msg, _ := recover().(string); !strings.Contains(msg, "is not ours") && !strings.Contains(msg, "not a buffer of this pool") {
			t.Errorf("a receive answered into a corrupt record: panic %q, want one naming the buffer", msg)
		}
	}()
	r.udpAnswers(nil)
	t.Errorf("syscall went on with a corrupt record of its buffer")
}

// TestNewGenerationReleasesOldPools: syscall maps every pool of its
// neighbours (an application's, a transport's output pool); when a
// neighbour's next generation attaches, syscall unmaps the old one's pools
// and tells init, which otherwise kept them until syscall itself restarted.
func TestNewGenerationReleasesOldPools(t *testing.T) {
	r := newRig(t)
	var released []uint32
	r.s.release = func(id uint32) { released = append(released, id) }
	r.connectApp(1)
	r.connectUDP(1)
	out, err := pool.Create(40, 2, 2048)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	r.s.links["udp"].peer.Pools = []*pool.Pool{out} // udp.out, as init hands it
	r.connectUDP(2)
	if !slices.Equal(released, []uint32{40}) {
		t.Errorf("released %v when udp generation 2 attached, want generation 1's pool 40", released)
	}
	released = nil
	r.connectApp(2)
	if !slices.Equal(released, []uint32{r.appPool.ID()}) {
		t.Errorf("released %v when app generation 2 attached, want generation 1's pool %d", released, r.appPool.ID())
	}
}

// newListeningRig is a rig whose transport plays TCP too, with the
// application's socket 1 listening.
func newListeningRig(t *testing.T) *rig {
	r := newRig(t)
	r.s.o.Transports[ops.TCP] = "udp"
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil)
	r.appSends(ops.OpOpen, 1, uint64(ops.TCP))
	r.appSends(ops.OpListen, 1, 16)
	r.udpAnswers(nil)
	recvAll(r.app)
	return r
}

// A transport restart with an accept pending: the new generation gets the
// listener's OpOpen, not one of the connection the accept is to create
// (the transport would take that id as taken, and refuse the accept), and
// then the accept again.
func TestTransportRestartReopensAllButWhatIsToCome(t *testing.T) {
	r := newListeningRig(t)
	r.appSends(ops.OpAccept, 1, 9)
	pending := recvAll(r.udp) // the accept, never answered: then the transport dies
	if len(pending) != 1 || ops.OpOf(pending[0]) != ops.OpAccept {
		t.Fatalf("transport got %+v, want the accept", pending)
	}
	listener, conn := pending[0].Arg[0], pending[0].Arg[1]
	r.connectUDP(2)
	r.run()
	reqs := recvAll(r.udp)
	var opened []uint64
	for _, m := range reqs {
		if ops.OpOf(m) == ops.OpOpen {
			opened = append(opened, m.Arg[0])
		}
	}
	if len(opened) != 1 || opened[0] != listener {
		t.Errorf("the new transport was asked to open %v, want only the listener %d (not the accept's connection %d)", opened, listener, conn)
	}
	if last := reqs[len(reqs)-1]; ops.OpOf(last) != ops.OpAccept || last.Arg[1] != conn {
		t.Errorf("the new transport got %+v last, want the accept of connection %d again", last, conn)
	}
}

// Zero copy: to a transport granted the applications' pools a send and a
// receive go with the application's own buffer, and nothing is copied
// here; a transport that answers StatusNoPool (its grant of the pool had
// not come) gets the request again with a copy, and the application sees
// one answer; the pool's later requests go with copies.
func TestZeroCopyForwarding(t *testing.T) {
	r := newRig(t)
	r.s.o.ZeroCopy = []string{"udp"}
	r.connectApp(1)
	r.connectUDP(1)
	r.udpAnswers(nil) // the orphans' close
	r.appSends(ops.OpOpen, 7, uint64(ops.UDP))
	r.udpAnswers(nil)
	recvAll(r.app)

	send := r.appSendsAddr(ops.OpSendTo, 7, ops.MakeAddr(peerIP, 9))
	reqs := r.udpAnswers(nil)
	if len(reqs) != 1 || reqs[0].Ref.Pool != r.appPool.ID() {
		t.Fatalf("forwarded %+v, want one OpSendTo naming the application's buffer", reqs)
	}
	if b, _ := r.appPool.Bytes(reqs[0].Ref); string(b) != "hello, transport" {
		t.Errorf("the transport reads %q in the application's buffer, want its bytes", b)
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != send || ops.StatusOf(got[0]) != ops.StatusOK {
		t.Errorf("app got %+v, want its send answered", got)
	}

	recv := r.appSends(ops.OpRecvFrom, 7)
	r.udpAnswers(func(q channel.Msg, rep *channel.Msg) {
		b, err := r.appPool.Bytes(q.Ref)
		if err != nil {
			t.Fatalf("the receive names %v, not the application's buffer: %v", q.Ref, err)
		}
		rep.Ref.Len = uint32(copy(b, "a datagram"))
	})
	got := recvAll(r.app)
	if len(got) != 1 || got[0].ID != recv || got[0].Ref.Len != 10 {
		t.Fatalf("app got %+v, want its receive answered with 10 bytes", got)
	}
	if b, _ := r.appPool.Bytes(got[0].Ref); string(b) != "a datagram" {
		t.Errorf("app buffer holds %q, want %q", b, "a datagram")
	}
	if st := r.s.stats; st.ZeroCopyDown != 16 || st.ZeroCopyUp != 10 || st.CopiedDown != 0 || st.CopiedUp != 0 || r.io.Available() != r.io.Len() {
		t.Errorf("by reference %d down, %d up; copied %d, %d; %d of %d syscall.io buffers free: want 16, 10, none copied, all free",
			st.ZeroCopyDown, st.ZeroCopyUp, st.CopiedDown, st.CopiedUp, r.io.Available(), r.io.Len())
	}

	// The transport was not granted the pool: StatusNoPool, then the copy.
	send = r.appSendsAddr(ops.OpSendTo, 7, ops.MakeAddr(peerIP, 9))
	r.udpAnswers(func(q channel.Msg, rep *channel.Msg) { ops.SetStatus(rep, ops.StatusNoPool) })
	if got := recvAll(r.app); len(got) != 0 {
		t.Fatalf("app got %+v before the copy was answered, want nothing", got)
	}
	reqs = r.udpAnswers(nil)
	if len(reqs) != 1 || reqs[0].Ref.Pool != r.io.ID() {
		t.Fatalf("sent again %+v, want one OpSendTo in syscall.io", reqs)
	}
	if got := recvAll(r.app); len(got) != 1 || got[0].ID != send || ops.StatusOf(got[0]) != ops.StatusOK {
		t.Errorf("app got %+v, want its send answered once, ok", got)
	}
	r.appSendsAddr(ops.OpSendTo, 7, ops.MakeAddr(peerIP, 9))
	if reqs := r.udpAnswers(nil); len(reqs) != 1 || reqs[0].Ref.Pool != r.io.ID() {
		t.Errorf("the next send %+v, want it in syscall.io: the pool is not granted", reqs)
	}
	if st := r.s.stats; st.NoPoolRetries != 1 || st.CopiedDown != 32 {
		t.Errorf("%d retries, %d bytes copied down; want 1, 32", st.NoPoolRetries, st.CopiedDown)
	}
}
