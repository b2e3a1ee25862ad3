package socket

import (
	"keepnet/kernel/channel"
	"keepnet/servers/ops"
)

// fakeTCP is the stream state of a fake TCP socket: a listener with its
// posted accepts and its connections not yet accepted, or one end of a
// connection. A connection is a reliable byte stream into the peer's
// receive buffer (fakeNet.rcvBuf bytes): a send takes what fits and waits
// unanswered until all of it fits, as servers/tcp answers a send once its
// send buffer took the whole of it.
// Everything is guarded by fakeNet.mu.
type fakeTCP struct {
	listening bool
	backlog   int
	accepts   []channel.Msg // posted OpAccept
	ready     []*fakeSock   // established, waiting for an accept

	peer   *fakeSock
	from   *fakeSock     // the listener it was accepted on
	rbuf   []byte        // received, not yet consumed (proven received by a receive's offset)
	lent   int           // bytes of rbuf handed out, not yet proven received
	rbase  uint64        // stream offset of rbuf[0]
	sent   uint64        // bytes the sends handed over that were taken
	sends  []channel.Msg // OpSendTo not yet answered, in order
	took   int           // bytes of sends[0] already taken
	fin    bool          // no more sending: the peer gets EOF once sends drain
	eof    bool          // the peer's FIN came, after its bytes
	reset  ops.Status    // StatusReset once an RST came
	closed bool

	// Counters of the receives answered.
	readiness, wouldBlock int

	opts map[ops.Option]uint64 // OpSetOption's, as set
}

// handleTCP serves one request on a TCP socket (s is nil for its OpOpen).
// n.mu must be held.
func (f *fakeServer) handleTCP(s *fakeSock, m channel.Msg) {
	n := f.n
	if ops.OpOf(m) == ops.OpOpen {
		if s != nil {
			f.reply(m, ops.StatusOK) // a reissue
			return
		}
		f.socks[m.Arg[0]] = &fakeSock{srv: f, id: m.Arg[0], tcp: &fakeTCP{}}
		f.reply(m, ops.StatusOK)
		return
	}
	t := s.tcp
	switch ops.OpOf(m) {
	case ops.OpBind:
		if s.bound && ops.GetAddr(m, ops.AtArg1) == s.local {
			ops.PutAddr(&m, ops.AtArg0, s.local)
			f.reply(m, ops.StatusOK) // a reissue
			return
		}
		if s.bound {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if st := n.bindTCP(s, ops.GetAddr(m, ops.AtArg1)); st != ops.StatusOK {
			f.reply(m, st)
			return
		}
		ops.PutAddr(&m, ops.AtArg0, s.local)
		f.reply(m, ops.StatusOK)
	case ops.OpListen:
		if t.listening {
			f.reply(m, ops.StatusOK) // a reissue
			return
		}
		if t.peer != nil {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if !s.bound {
			n.bindTCP(s, ops.Addr{})
		}
		t.listening, t.backlog = true, int(m.Arg[1])
		f.reply(m, ops.StatusOK)
	case ops.OpAccept:
		if !t.listening {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if c := f.socks[m.Arg[1]]; c != nil && c.tcp != nil && c.tcp.from == s {
			ops.PutAddr(&m, ops.AtArg0, c.remote) // accepted already: a reissue
			ops.PutAddr(&m, ops.AtArg2, c.local)
			f.reply(m, ops.StatusOK)
			return
		}
		t.accepts = append(t.accepts, m)
		n.matchAccepts(s)
	case ops.OpConnect:
		if t.peer != nil && ops.GetAddr(m, ops.AtArg1) == s.remote {
			ops.PutAddr(&m, ops.AtArg0, s.local) // a reissue
			f.reply(m, ops.StatusOK)
			return
		}
		if t.listening || t.peer != nil {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if !s.bound {
			if st := n.bindTCP(s, ops.MakeAddr(hostIP, 0)); st != ops.StatusOK {
				f.reply(m, st)
				return
			}
		}
		dst := ops.GetAddr(m, ops.AtArg1)
		if dst.IP() != hostIP && dst.IP() != hostIP6 {
			f.reply(m, ops.StatusNetUnreach) // not this host: nothing routes there
			return
		}
		l := n.tcpPorts[dst.Port()]
		if l == nil || !l.tcp.listening || l.srv.socks == nil || len(l.tcp.ready) >= max(1, l.tcp.backlog) {
			f.reply(m, ops.StatusRefused) // an RST answered the SYN
			return
		}
		src := s.local
		if src.IP().IsUnspecified() {
			src = ops.MakeAddr(hostIP, src.Port())
		}
		child := &fakeSock{srv: l.srv, local: ops.MakeAddr(hostIP, dst.Port()), remote: src,
			bound: true, connected: true, tcp: &fakeTCP{peer: s}}
		t.peer = child
		s.remote, s.connected = dst, true
		ops.PutAddr(&m, ops.AtArg0, s.local)
		f.reply(m, ops.StatusOK)
		l.tcp.ready = append(l.tcp.ready, child)
		n.matchAccepts(l)
	case ops.OpSendTo:
		switch {
		case t.reset != ops.StatusOK:
			f.reply(m, t.reset)
		case t.peer == nil || t.fin || m.Flags&ops.FlagOffset == 0 && !ops.GetAddr(m, ops.AtArg1).IsZero():
			f.reply(m, ops.StatusInvalid)
		default:
			t.sends = append(t.sends, m)
			n.pump(s)
		}
	case ops.OpRecvFrom:
		switch {
		case t.reset != ops.StatusOK:
			m.Ref.Len = 0
			f.reply(m, t.reset)
		case t.peer == nil:
			f.reply(m, ops.StatusInvalid)
		case m.Flags&ops.FlagOffset != 0 && m.Arg[1] > t.rbase+uint64(len(t.rbuf)):
			m.Ref.Len = 0
			f.reply(m, ops.StatusInvalid) // beyond what was received
		default:
			if off := m.Arg[1]; m.Flags&ops.FlagOffset != 0 && off > t.rbase {
				k := int(off - t.rbase)
				t.rbuf, t.rbase, t.lent = t.rbuf[k:], off, max(t.lent-k, 0)
			}
			s.posted = append(s.posted, m)
			n.pump(t.peer)
		}
	case ops.OpShutdown:
		if t.peer == nil {
			f.reply(m, ops.StatusInvalid)
			return
		}
		t.fin = true
		f.reply(m, ops.StatusOK)
		n.pump(s)
	case ops.OpSetOption:
		if t.peer == nil || ops.Option(m.Arg[1]) > ops.OptRecvBuffer {
			f.reply(m, ops.StatusInvalid)
			return
		}
		if t.opts == nil {
			t.opts = map[ops.Option]uint64{}
		}
		t.opts[ops.Option(m.Arg[1])] = m.Arg[2]
		f.reply(m, ops.StatusOK)
	case ops.OpClose:
		n.closeTCP(s, ops.StatusClosed)
		delete(f.socks, s.id)
		if f.holdCloses {
			f.heldCloses = append(f.heldCloses, m) // a lingering close
			return
		}
		f.reply(m, ops.StatusOK)
	default:
		f.reply(m, ops.StatusInvalid)
	}
}

// option is the value OpSetOption set o to on the connection the
// socket sock names, and whether it was set.
func (n *fakeNet) option(f *fakeServer, sock uint64, o ops.Option) (uint64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := f.socks[sock]
	if s == nil || s.tcp == nil {
		return 0, false
	}
	v, ok := s.tcp.opts[o]
	return v, ok
}

// releaseCloses answers the held closes.
func (f *fakeServer) releaseCloses() {
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	f.holdCloses = false
	for _, m := range f.heldCloses {
		f.reply(m, ops.StatusOK)
	}
	f.heldCloses = nil
	f.flush()
}

// bindTCP binds s in TCP's port space (port 0: ephemeral). n.mu must be
// held.
func (n *fakeNet) bindTCP(s *fakeSock, a ops.Addr) ops.Status {
	port := a.Port()
	if port == 0 {
		for n.tcpPorts[n.nextTCPEph] != nil {
			n.nextTCPEph++
		}
		port = n.nextTCPEph
		n.nextTCPEph++
	}
	if n.tcpPorts[port] != nil {
		return ops.StatusInUse
	}
	n.tcpPorts[port] = s
	s.local, s.bound = ops.MakeAddr(a.IP(), port), true
	return ops.StatusOK
}

func (n *fakeNet) unbindTCP(s *fakeSock) {
	if s.bound && n.tcpPorts[s.local.Port()] == s {
		delete(n.tcpPorts, s.local.Port())
	}
}

// matchAccepts hands l's established connections to its posted accepts.
// n.mu must be held.
func (n *fakeNet) matchAccepts(l *fakeSock) {
	t := l.tcp
	for len(t.accepts) > 0 && len(t.ready) > 0 {
		a, c := t.accepts[0], t.ready[0]
		t.accepts, t.ready = t.accepts[1:], t.ready[1:]
		if l.srv.socks[a.Arg[1]] != nil {
			l.srv.reply(a, ops.StatusInvalid)
			t.ready = append([]*fakeSock{c}, t.ready...)
			continue
		}
		c.id = a.Arg[1]
		c.tcp.from = l
		l.srv.socks[c.id] = c
		ops.PutAddr(&a, ops.AtArg0, c.remote)
		ops.PutAddr(&a, ops.AtArg2, c.local)
		l.srv.reply(a, ops.StatusOK)
	}
	l.srv.flush()
}

// pump moves from's bytes along its connection: its waiting sends into the
// peer's receive buffer as far as it has room, then the buffer (and EOF
// after it) into the peer's posted receives, until neither moves. A peer
// that is closed answers with a reset. n.mu must be held.
func (n *fakeNet) pump(from *fakeSock) {
	if from == nil || from.tcp.peer == nil {
		return
	}
	ft, to := from.tcp, from.tcp.peer
	tt := to.tcp
	defer from.srv.flush()
	defer to.srv.flush()
	for moved := true; moved; {
		moved = false
		for len(ft.sends) > 0 && ft.reset == ops.StatusOK {
			if tt.closed || tt.reset != ops.StatusOK {
				n.resetTCP(from, ops.StatusReset)
				return
			}
			room := n.rcvBuf - len(tt.rbuf)
			if room <= 0 {
				break
			}
			m := ft.sends[0]
			b, err := from.srv.pool.Bytes(m.Ref)
			if err != nil {
				ft.sends, ft.took = ft.sends[1:], 0
				from.srv.reply(m, ops.StatusInvalid)
				continue
			}
			if off := m.Arg[1] + uint64(ft.took); m.Flags&ops.FlagOffset != 0 && off < ft.sent {
				ft.took += int(min(ft.sent-off, uint64(len(b)-ft.took))) // taken before: a reissue
			}
			k := min(room, len(b)-ft.took)
			if n.takeMax > 0 {
				k = min(k, n.takeMax)
			}
			tt.rbuf = append(tt.rbuf, b[ft.took:ft.took+k]...)
			ft.took += k
			ft.sent += uint64(k)
			moved = true
			if ft.took < len(b) {
				continue
			}
			ft.sends, ft.took = ft.sends[1:], 0
			m.Arg[2] = uint64(len(b))
			from.srv.reply(m, ops.StatusOK)
		}
		if ft.fin && len(ft.sends) == 0 {
			tt.eof = true
		}
		// The posted receives, in order: a readiness receive (zero Ref)
		// is answered once there is something to read, a data receive
		// with it, a FlagNoWait one at once ("would block": no bytes,
		// no FlagEOF).
		for len(to.posted) > 0 {
			r := to.posted[0]
			readable := len(tt.rbuf) > tt.lent || tt.eof
			if !readable && (r.Ref.IsZero() || r.Flags&ops.FlagNoWait == 0) {
				break
			}
			to.posted = to.posted[1:]
			kept := r.Flags&ops.FlagOffset != 0
			r.Flags &^= ops.FlagNoWait | ops.FlagOffset
			if r.Ref.IsZero() {
				tt.readiness++
				to.srv.reply(r, ops.StatusOK)
				continue
			}
			buf, err := to.srv.pool.Bytes(r.Ref)
			if err != nil {
				to.srv.reply(r, ops.StatusInvalid)
				continue
			}
			switch {
			case len(tt.rbuf) > tt.lent:
				k := copy(buf, tt.rbuf[tt.lent:])
				r.Flags |= ops.FlagOffset // where the bytes lie in the stream
				r.Arg[1] = tt.rbase + uint64(tt.lent)
				if kept {
					tt.lent += k // kept until a receive proves it received
				} else {
					tt.rbuf, tt.rbase = tt.rbuf[k:], tt.rbase+uint64(k)
				}
				r.Ref.Len = uint32(k)
				moved = true
			case tt.eof:
				r.Ref.Len = 0
				r.Flags |= ops.FlagEOF
			default:
				r.Ref.Len = 0
				tt.wouldBlock++
			}
			to.srv.reply(r, ops.StatusOK)
		}
	}
}

// resetTCP resets s's end of a connection (an RST came): its waiting
// receives and sends, and later ones, are answered status. n.mu must be
// held.
func (n *fakeNet) resetTCP(s *fakeSock, status ops.Status) {
	t := s.tcp
	if t.reset != ops.StatusOK || t.closed {
		return
	}
	t.reset = status
	for _, r := range s.posted {
		r.Ref.Len = 0
		s.srv.reply(r, status)
	}
	for _, m := range t.sends {
		s.srv.reply(m, status)
	}
	s.posted, t.sends = nil, nil
	s.srv.flush()
}

// closeTCP closes s: a listener answers its accepts with status and resets
// the connections nobody accepted; a connection answers its own requests
// with status and ends the stream orderly (FIN after the bytes already
// taken), or with an RST if bytes it received are unread. n.mu must be held.
func (n *fakeNet) closeTCP(s *fakeSock, status ops.Status) {
	t := s.tcp
	if t.closed {
		return
	}
	for _, a := range t.accepts {
		s.srv.reply(a, status)
	}
	for _, c := range t.ready {
		n.resetTCP(c.tcp.peer, ops.StatusReset)
	}
	for _, r := range s.posted {
		r.Ref.Len = 0
		s.srv.reply(r, status)
	}
	s.posted, t.accepts, t.ready = nil, nil, nil
	if p := t.peer; p != nil && t.reset == ops.StatusOK {
		if len(t.rbuf) > t.lent || len(p.tcp.sends) > 0 {
			n.resetTCP(p, ops.StatusReset)
		} else {
			t.fin = true
			n.pump(s) // the sends waiting go out, then EOF
		}
	}
	for _, m := range t.sends { // nothing fitted: they are dropped
		s.srv.reply(m, status)
	}
	t.sends = nil
	t.closed = true
	n.unbindTCP(s)
}

// crashTCP resets s in the transport, as a new SYSCALL generation's
// OpReset does: a listener is gone, a connection's peer gets an RST.
// n.mu must be held; s's server is no longer answering.
func (n *fakeNet) crashTCP(s *fakeSock) {
	if p := s.tcp.peer; p != nil {
		n.resetTCP(p, ops.StatusReset)
	}
	n.resetTCP(s, ops.StatusReset) // no FIN from closeTCP
	n.closeTCP(s, ops.StatusClosed)
}

// rst resets the connection bound to local TCP port port, as an RST
// arriving from the network would.
func (n *fakeNet) rst(port uint16) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.tcpPorts[port]; s != nil && s.tcp.peer != nil {
		n.resetTCP(s, ops.StatusReset)
	}
}
