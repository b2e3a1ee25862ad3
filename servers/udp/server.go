package udp

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/store"
	"keepnet/servers/transport"
)

// The UDP server process: the Table as a servers/transport core. This file
// is the core's socket side (one method per servers/ops operation) and
// Serve; the links, the loop, the pool and the store journal are the
// framework's.
//
// Pools: udp owns "udp.out" (segments it hands to IP: the Table builds each
// in a buffer the framework lends, sent with OpOutput, freed on the reply).

// Names, as the component table gives them.
const (
	OutPool     = "udp.out" // segments handed to IP
	IPPeer      = transport.IPPeer
	SyscallPeer = transport.SyscallPeer
)

// maxDeferred bounds the sends held until IP tells our address.
const maxDeferred = 1024

// ServerOptions configure the process.
type ServerOptions struct {
	Name    string // the component, "udp"
	IP      string // the IP component, "ip"
	Syscall string // the SYSCALL component, "syscall"
	Store   *store.Client
	Limits  Limits // zero: DefaultLimits
	// Grants: init grants us the applications' pools, and SYSCALL
	// forwards their buffers by reference (transport.Config.Grants).
	Grants bool
}

// Stats is what the UDP server publishes for `keepnet stats udp`.
type Stats struct {
	transport.Stats
	Sockets        int
	QueuedBytes    int
	PostedReceives int
	Counters
}

// Serve runs the UDP server process until ctx ends: restore the sockets,
// join the wiring, serve (transport.Serve).
func Serve(ctx context.Context, o ServerOptions) error {
	if o.Name == "" {
		o.Name = "udp"
	}
	c := transport.Config{Name: o.Name, IP: o.IP, Syscall: o.Syscall, Protocol: header.ProtocolUDP, Grants: o.Grants}
	return transport.Serve(ctx, c, o.Store, StoreNS, ParseRecord, func(h transport.Host, gen int, j Journal) transport.Core[Record] {
		return newCore(h, o.Limits, j, gen)
	})
}

// core is the Table as the framework drives it.
type core struct {
	h     transport.Host
	table *Table
	// posted are the OpRecvFrom requests the Table holds, by the tag
	// given to the Table (udp's own counter, not the peer's id).
	posted  map[uint64]channel.Msg
	nextTag uint64
	// deferred are OpSendTo requests held until IP tells our address.
	deferred []channel.Msg
	// connecting are the OpConnects to IPv6 peers waiting for IP to say
	// which address the socket sends from (Connect).
	connecting *transport.SourceQuestions[channel.Msg]
}

func newCore(h transport.Host, l Limits, j Journal, gen int) *core {
	c := &core{h: h, posted: map[uint64]channel.Msg{}, connecting: transport.NewSourceQuestions[channel.Msg](h.AskSource)}
	seed := uint64(time.Now().UnixNano())
	c.table = New(h, c.complete, Options{Limits: l, Journal: j, Rand: rand.New(rand.NewPCG(seed, uint64(gen)))})
	return c
}

// SetAddr takes our address and whether IP checksums for us; the sends
// held for it go now.
func (c *core) SetAddr(p netip.Prefix, o transport.Offloads) {
	c.table.SetAddr(p)
	c.table.SetChecksumOffload(o.Checksum)
	deferred := c.deferred
	c.deferred = nil
	for _, d := range deferred {
		c.SendTo(d)
	}
}

// Restore recreates the sockets of a previous generation.
func (c *core) Restore(rs []Record) (int, []error) { return c.table.Restore(rs) }

func (c *core) Deliver(seg []byte, src, dst netip.Addr) ops.Status {
	return c.table.Deliver(seg, src, dst)
}

// DeliverVerified is Deliver of a datagram whose checksum the device
// verified (transport.VerifiedReceiver).
func (c *core) DeliverVerified(seg []byte, src, dst netip.Addr, _ uint8) ops.Status {
	return c.table.DeliverVerified(seg, src, dst)
}

// DropRequests drops the posted receives and held sends of a SYSCALL
// generation that is gone.
// DeliverError hands the Table an ICMP error about one of our datagrams.
func (c *core) DeliverError(e ops.ICMPError) { c.table.HandleICMP(e.Type, e.Code, e.Local, e.Remote) }

func (c *core) DropRequests() int {
	n := c.table.DropReceives() + len(c.deferred) + c.connecting.Len()
	clear(c.posted)
	c.connecting.Clear() // IP's answers, when they come, find no one
	c.deferred = nil
	return n
}

// DropPool answers StatusClosed the receives posted and the sends held
// with buffers in pool id: an application's, granted to us, about to be
// unmapped because the application restarted (transport.PoolDropper).
func (c *core) DropPool(id uint32) int {
	in := func(m channel.Msg) bool { return !m.Ref.IsZero() && m.Ref.Pool == id }
	n := c.table.CancelReceives(func(tag uint64) bool { return in(c.posted[tag]) })
	c.deferred = slices.DeleteFunc(c.deferred, func(m channel.Msg) bool {
		if !in(m) {
			return false
		}
		c.reply(m, ops.StatusClosed)
		n++
		return true
	})
	return n
}

func (c *core) Hold()  {}
func (c *core) Flush() {}

// Poll fails the connects that waited transport.SourceWait for IP's
// answer, and wakes for the next.
func (c *core) Poll() (bool, time.Time) {
	return false, c.connecting.Expire(time.Now(), func(m channel.Msg, _ netip.Addr) { c.reply(m, ops.StatusTimedOut) })
}
func (c *core) reply(m channel.Msg, st ops.Status) { ops.SetStatus(&m, st); c.h.Reply(m) }

// replyStored answers a request that changed a socket's record (open,
// bind, connect, close) once the record is in the store
// (transport.Host.ReplyStored): a crash of udp right after the answer must
// not lose the socket the application was told it has.
func (c *core) replyStored(m channel.Msg, st ops.Status) { ops.SetStatus(&m, st); c.h.ReplyStored(m) }

func (c *core) Stats(common transport.Stats) any {
	return Stats{Stats: common, Sockets: c.table.Sockets(), QueuedBytes: c.table.QueuedBytes(),
		PostedReceives: len(c.posted), Counters: c.table.Counters()}
}

// complete answers a RecvFrom the Table finished.
func (c *core) complete(d Completion) {
	m, ok := c.posted[d.Tag]
	if !ok {
		return
	}
	delete(c.posted, d.Tag)
	m.Flags = d.Flags
	m.Ref.Len = uint32(d.Len)
	ops.PutAddr(&m, ops.AtArg0, d.Src)
	c.reply(m, d.Status)
}

func (c *core) Open(m channel.Msg) { c.replyStored(m, c.table.Open(m.Arg[0], ops.Network(m.Arg[1]))) }

func (c *core) Bind(m channel.Msg) { c.withAddr(m, c.table.Bind) }

// Connect connects socket Arg[0] to a peer. To an IPv6 peer, from a
// socket bound to no address, the reply names the address IP will send
// from (RFC 6724), as getsockname(2) does on Linux after a connect: IP
// is asked (OpSource) and the connect waits for its answer, so that one
// IP has no source for fails as Linux's does (ENETUNREACH,
// EADDRNOTAVAIL) and leaves the socket as it was.
func (c *core) Connect(m channel.Msg) {
	remote := ops.GetAddr(m, ops.AtArg1)
	local, bound := c.table.Local(m.Arg[0])
	if remote.Is4() || !bound || !local.IP().IsUnspecified() || remote.IP().IsUnspecified() || remote.Port() == 0 {
		c.withAddr(m, c.table.Connect)
		return
	}
	if _, ok := c.connecting.Ask(remote.IP(), m, time.Now()); !ok {
		c.reply(m, ops.StatusNoBuffers)
	}
}

// Source is transport.SourceReceiver's: IP's answer for a held connect.
func (c *core) Source(key uint64, src netip.Addr, st ops.Status) {
	m, _, ok := c.connecting.Answer(key)
	if !ok {
		return // given up on, or dropped with its SYSCALL generation
	}
	if st != ops.StatusOK {
		c.reply(m, st)
		return
	}
	local, st := c.table.Connect(m.Arg[0], ops.GetAddr(m, ops.AtArg1))
	if st == ops.StatusOK && local.IP().IsUnspecified() && src.Is6() {
		local = ops.MakeAddr(src, local.Port())
	}
	ops.PutAddr(&m, ops.AtArg0, local)
	c.replyStored(m, st)
}

// withAddr answers m with what op makes of its socket and address; the
// reply carries the local address.
func (c *core) withAddr(m channel.Msg, op func(id uint64, a ops.Addr) (ops.Addr, ops.Status)) {
	a, st := op(m.Arg[0], ops.GetAddr(m, ops.AtArg1))
	ops.PutAddr(&m, ops.AtArg0, a)
	c.replyStored(m, st)
}

func (c *core) SendTo(m channel.Msg) {
	if !c.table.Addr().IsValid() && len(c.deferred) < maxDeferred {
		c.deferred = append(c.deferred, m) // until IP tells our address
		return
	}
	payload, ok := c.h.SyscallBytes(m.Ref)
	if !ok {
		c.reply(m, ops.StatusInvalid)
		return
	}
	local, st := c.table.SendTo(m.Arg[0], ops.GetAddr(m, ops.AtArg1), payload)
	ops.PutAddr(&m, ops.AtArg0, local)
	c.replyStored(m, st)
}

func (c *core) RecvFrom(m channel.Msg) {
	buf, ok := c.h.SyscallBytes(m.Ref)
	if !ok {
		c.reply(m, ops.StatusInvalid)
		return
	}
	c.nextTag++
	c.posted[c.nextTag] = m
	c.table.RecvFrom(m.Arg[0], c.nextTag, buf) // may answer at once
}

// Holds is transport.Auditor's: whether m is a receive the Table has
// posted on its socket, a send held until IP tells our address, or a
// connect waiting for IP's answer about its source. Every other
// operation is answered at once.
func (c *core) Holds(m channel.Msg) bool {
	switch ops.OpOf(m) {
	case ops.OpRecvFrom:
		for tag, p := range c.posted {
			if p.ID == m.ID {
				return c.table.HoldsReceive(m.Arg[0], tag)
			}
		}
	case ops.OpSendTo:
		return slices.ContainsFunc(c.deferred, func(d channel.Msg) bool { return d.ID == m.ID })
	case ops.OpConnect:
		for held := range c.connecting.Waiters() {
			if held.ID == m.ID {
				return true
			}
		}
	}
	return false
}

var _ transport.Auditor = (*core)(nil)
var _ transport.ErrorReceiver = (*core)(nil)
var _ transport.SourceReceiver = (*core)(nil)

// Close answers the socket's posted receives first.
func (c *core) Close(m channel.Msg) { c.replyStored(m, c.table.Close(m.Arg[0])) }

// Adopt answers whether socket Arg[0] exists.
func (c *core) Adopt(m channel.Msg) {
	st := ops.StatusNoSocket
	if c.table.Has(m.Arg[0]) {
		st = ops.StatusOK
	}
	c.reply(m, st)
}

// CloseRange closes the sockets with ids in [Arg[0], Arg[1]).
func (c *core) CloseRange(m channel.Msg) {
	c.table.CloseRange(m.Arg[0], m.Arg[1])
	c.replyStored(m, ops.StatusOK)
}

func (c *core) Reset(m channel.Msg) {
	c.table.Reset()
	c.replyStored(m, ops.StatusOK)
}

var _ transport.Core[Record] = (*core)(nil)
