package tcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/header"
	"keepnet/servers/ops"
	"keepnet/servers/transport/transporttest"
)

// TestServerTransferBackToBack: two tcp processes wired back to back
// through fake ips that relay each OpOutput as an OpDeliver to the other
// (wrapped in an IPv4 header), and two fake syscalls moving 1 MB from one
// to the other; the SHA-256 must match.
func TestServerTransferBackToBack(t *testing.T) { backToBack(t, sendAll, 0, false) }

// The same with SYSCALL keeping eight sends posted at once, as the socket
// library does, and a send buffer smaller than they hold: each is answered
// only when all of it is in the send buffer, so the bytes go out in order.
func TestServerTransferPipelinedSends(t *testing.T) {
	backToBack(t, func(f *transporttest.Neighbour, id uint64, data []byte) error {
		return sendPipelined(f, id, data, true)
	}, 40<<10, false)
}

// And closing with sends still posted: the close takes them into the send
// buffer (past its limit) and the peer reads every byte before the EOF.
func TestServerTransferCloseWithSendsPosted(t *testing.T) {
	backToBack(t, func(f *transporttest.Neighbour, id uint64, data []byte) error {
		// All but the last eight buffers' worth as usual, then those
		// posted at once and the close right behind them.
		tail := len(data) - 8*(16<<10)
		if err := sendPipelined(f, id, data[:tail], false); err != nil {
			return err
		}
		data = data[tail:]
		var posted []channel.Msg
		for len(data) > 0 {
			req, ok := sendTo(f, id, data)
			if !ok {
				return errors.New("syscall.io exhausted")
			}
			data = data[req.Ref.Len:]
			if err := f.TrySend(req); err != nil {
				return err
			}
			posted = append(posted, req)
		}
		f.NextID++
		closeReq := channel.Msg{ID: f.NextID, Op: uint16(ops.OpClose), Arg: [4]uint64{id}}
		if err := f.TrySend(closeReq); err != nil {
			return err
		}
		for _, req := range posted {
			r, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == req.ID })
			f.Pool.Free(req.Ref)
			if err != nil {
				return err
			}
			if ops.StatusOf(r) != ops.StatusOK || r.Arg[2] != uint64(req.Ref.Len) {
				return fmt.Errorf("OpSendTo answered at close = %s, %d of %d bytes", ops.StatusOf(r), r.Arg[2], req.Ref.Len)
			}
		}
		_, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == closeReq.ID })
		return err
	}, 40<<10, true)
}

func backToBack(t *testing.T, sender func(*transporttest.Neighbour, uint64, []byte) error, sendBuf int, senderCloses bool) {
	const size = 1 << 20
	a := startProc(t, procOptions{outBufs: 32, ioSize: 16 << 10})                                  // 10.0.2.15, listens
	b := startProc(t, procOptions{outBufs: 32, ioSize: 16 << 10, poolIDs: 1000, sendBuf: sendBuf}) // 10.0.2.2, connects
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { relay(ctx, []*relayEnd{{p: a, prefix: srvNet}, {p: b, prefix: cliNet}}) })
	defer wg.Wait()
	defer cancel()

	data := make([]byte, size)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)

	a.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	a.mustCallMsg(withAddr(ops.OpBind.Msg(1), sockAddr(netip.IPv4Unspecified(), 80)))
	a.mustCall(ops.OpListen, 1, 4)
	acc := a.sys.Send(ops.OpAccept.Msg(1, 2))
	b.mustCall(ops.OpOpen, 1, uint64(ops.TCP))
	if r := b.mustCallMsg(withAddr(ops.OpConnect.Msg(1), sockAddr(srvIP, 80))); replyAddr(r).IP() != cliIP {
		t.Fatalf("OpConnect: local %v, want on %v", replyAddr(r), cliIP)
	}
	if r := a.sys.Reply(acc); ops.StatusOf(r) != ops.StatusOK || replyAddr(r).IP() != cliIP {
		t.Fatalf("OpAccept = %s from %v", ops.StatusOf(r), replyAddr(r))
	}

	// b sends (and half-closes) from a goroutine; a receives here.
	sendErr := make(chan error, 1)
	go func() { sendErr <- sender(b.sys, 1, data) }()
	h := sha256.New()
	got := 0
	rbuf := a.sys.Buffer(nil, 16<<10)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := a.sys.Reply(a.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: rbuf, Arg: [4]uint64{2}}))
		if ops.StatusOf(r) != ops.StatusOK {
			t.Fatalf("OpRecvFrom after %d bytes = %s", got, ops.StatusOf(r))
		}
		if r.Flags&ops.FlagEOF != 0 {
			break
		}
		h.Write(a.sys.Bytes(r.Ref))
		got += int(r.Ref.Len)
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d bytes in 15 s", got, size)
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
	if sum := h.Sum(nil); got != size || !bytes.Equal(sum, want[:]) {
		t.Fatalf("received %d bytes, SHA-256 %x; want %d, %x", got, sum, size, want)
	}
	if senderCloses {
		return
	}
	// a answers with a short message and closes; b reads it, then EOF.
	reply := a.sys.Reply(a.sys.Send(channel.Msg{Op: uint16(ops.OpSendTo), Ref: a.sys.Buffer([]byte("done"), 0), Arg: [4]uint64{2}}))
	if ops.StatusOf(reply) != ops.StatusOK || reply.Arg[2] != 4 {
		t.Fatalf("OpSendTo(done) = %s, %d", ops.StatusOf(reply), reply.Arg[2])
	}
	a.mustCall(ops.OpClose, 2)
	bbuf := b.sys.Buffer(nil, 64)
	if r := b.sys.Reply(b.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: bbuf, Arg: [4]uint64{1}})); ops.StatusOf(r) != ops.StatusOK || string(b.sys.Bytes(r.Ref)) != "done" {
		t.Errorf("b's OpRecvFrom = %+v, want %q", r, "done")
	}
	if r := b.sys.Reply(b.sys.Send(channel.Msg{Op: uint16(ops.OpRecvFrom), Ref: bbuf, Arg: [4]uint64{1}})); r.Flags&ops.FlagEOF == 0 {
		t.Errorf("b's second OpRecvFrom = %+v, want EOF", r)
	}
	b.mustCall(ops.OpClose, 1)
	cancel()
	wg.Wait()
	for _, p := range []*proc{a, b} {
		p.stop()
		select {
		case <-p.stats:
		default:
		}
		p.fw.Publish() // the loop is over: ours to call
		st := <-p.stats
		t.Logf("%v: %d segments out, %d retransmits, %d timeouts; %d dropped for want of tcp.out, %d bytes copied into it", st.Addr,
			st.OutSegs, st.Retransmits, st.Timeouts, st.OutDrops, st.OutCopied)
		// Segments are built in their tcp.out buffer, the data copied
		// there from the send buffer: a copy into tcp.out is made only
		// for a segment held while every buffer was with ip.
		if p == b && st.OutCopied >= size/2 {
			t.Errorf("%v: %d of the %d bytes sent were copied into tcp.out; want segments built in place", st.Addr, st.OutCopied, size)
		}
	}
}

// sendTo fills a syscall.io buffer from the front of data and returns the
// OpSendTo for socket id that carries it; ok is false when the pool is
// empty.
func sendTo(f *transporttest.Neighbour, id uint64, data []byte) (req channel.Msg, ok bool) {
	ref, ok := f.Pool.Alloc()
	if !ok {
		return channel.Msg{}, false
	}
	buf, _ := f.Pool.Bytes(ref)
	ref.Len = uint32(copy(buf, data))
	f.NextID++
	return channel.Msg{ID: f.NextID, Op: uint16(ops.OpSendTo), Ref: ref, Arg: [4]uint64{id}}, true
}

// sendAll plays syscall sending data on socket id in buffer-sized pieces,
// sending again what a reply says was not taken, then OpShutdown.
func sendAll(f *transporttest.Neighbour, id uint64, data []byte) error {
	for len(data) > 0 {
		req, ok := sendTo(f, id, data)
		if !ok {
			return errors.New("syscall.io exhausted")
		}
		if err := f.TrySend(req); err != nil {
			return err
		}
		r, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == req.ID })
		f.Pool.Free(req.Ref)
		if err != nil {
			return err
		}
		if n := req.Ref.Len; ops.StatusOf(r) != ops.StatusOK || r.Arg[2] == 0 || r.Arg[2] > uint64(n) {
			return fmt.Errorf("OpSendTo = %s, %d of %d bytes taken", ops.StatusOf(r), r.Arg[2], n)
		}
		data = data[r.Arg[2]:]
	}
	return shutdown(f, id)
}

// sendPipelined plays syscall keeping up to eight OpSendTo posted; every
// reply must say its whole buffer was taken. Then OpShutdown.
func sendPipelined(f *transporttest.Neighbour, id uint64, data []byte, shut bool) error {
	type posted struct {
		req channel.Msg
		n   uint32
	}
	var inFlight []posted
	collect := func() error {
		p := inFlight[0]
		inFlight = inFlight[1:]
		r, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == p.req.ID })
		f.Pool.Free(p.req.Ref)
		if err != nil {
			return err
		}
		if ops.StatusOf(r) != ops.StatusOK || r.Arg[2] != uint64(p.n) {
			return fmt.Errorf("OpSendTo = %s, %d of %d bytes taken", ops.StatusOf(r), r.Arg[2], p.n)
		}
		return nil
	}
	for len(data) > 0 || len(inFlight) > 0 {
		if len(data) == 0 || len(inFlight) == 8 {
			if err := collect(); err != nil {
				return err
			}
			continue
		}
		req, ok := sendTo(f, id, data)
		if !ok {
			if err := collect(); err != nil {
				return err
			}
			continue
		}
		data = data[req.Ref.Len:]
		if err := f.TrySend(req); err != nil {
			return err
		}
		inFlight = append(inFlight, posted{req, req.Ref.Len})
	}
	if !shut {
		return nil
	}
	return shutdown(f, id)
}

// shutdown plays syscall's OpShutdown on socket id and checks the answer.
func shutdown(f *transporttest.Neighbour, id uint64) error {
	f.NextID++
	req := channel.Msg{ID: f.NextID, Op: uint16(ops.OpShutdown), Arg: [4]uint64{id}}
	if err := f.TrySend(req); err != nil {
		return err
	}
	r, err := f.TryRecv(func(m channel.Msg) bool { return m.ID == req.ID })
	if err == nil && ops.StatusOf(r) != ops.StatusOK {
		err = fmt.Errorf("OpShutdown = %s", ops.StatusOf(r))
	}
	return err
}

// relayEnd is one tcp process as its fake ip sees it.
type relayEnd struct {
	p       *proc
	prefix  netip.Prefix
	pending []channel.Msg // to send to the process
	nextID  uint64
}

// relay plays both ips: each OpOutput of one process becomes an OpDeliver
// (an IPv4 datagram in the other ip's "ip.up") to the other, and is
// answered; OpAddr is answered with the end's prefix. A segment finding
// ip.up exhausted is dropped, as a link would.
func relay(ctx context.Context, ends []*relayEnd) {
	var in [64]channel.Msg
	for ctx.Err() == nil {
		moved := false
		for i, e := range ends {
			other := ends[1-i]
			n := e.p.ip.Ep.Recv(in[:])
			moved = moved || n > 0
			for _, m := range in[:n] {
				switch ops.OpOf(m) {
				case ops.OpAddr:
					ops.SetAddrReply(&m, e.prefix, 0)
					e.pending = append(e.pending, m)
				case ops.OpOutput:
					seg, _ := e.p.out.Bytes(m.Ref)
					dst := ops.GetAddr(m, ops.AtArg0).IP()
					if d, ok := wrap(other.p.ip.Pool, seg, e.prefix.Addr(), dst); ok {
						other.nextID++
						dm := ops.Deliver(d, e.prefix.Addr(), dst, header.IPv4MinimumSize) // with the addresses and the TCP header's offset
						dm.ID = other.nextID
						other.pending = append(other.pending, dm)
					}
					e.pending = append(e.pending, m) // copied out
				case ops.OpDeliver: // the reply to one of ours
					e.p.ip.Pool.Free(m.Ref)
				}
			}
		}
		for _, e := range ends {
			sent := e.p.ip.Ep.Send(e.pending...)
			e.pending = e.pending[sent:]
			moved = moved || sent > 0
		}
		if !moved {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// wrap puts seg in an IPv4 datagram from src to dst in a buffer of up.
func wrap(up *pool.Pool, seg []byte, src, dst netip.Addr) (pool.Ref, bool) {
	ref, ok := up.Alloc()
	if !ok {
		return pool.Ref{}, false
	}
	b, _ := up.Bytes(ref)
	n := header.IPv4MinimumSize + len(seg)
	header.IPv4(b).Encode(&header.IPv4Fields{TotalLength: uint16(n), TTL: 64, Protocol: header.ProtocolTCP, Src: src, Dst: dst})
	copy(b[header.IPv4MinimumSize:], seg)
	ref.Len = uint32(n)
	return ref, true
}
