package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PacketPort is the network side: a non-blocking file where each read
// returns one Ethernet frame and each write sends one. A tap device from
// OpenTap is one; so is one end of a SOCK_SEQPACKET socketpair wrapped with
// os.NewFile, which the tests and the benchmark use instead. The relay uses
// its descriptor directly (through SyscallConn), never its methods.
type PacketPort interface {
	SyscallConn() (syscall.RawConn, error)
}

var _ PacketPort = (*os.File)(nil)

// Config configures a Relay.
type Config struct {
	Out Impairment // frames from the guest: QEMU socket → tap
	In  Impairment // frames to the guest: tap → QEMU socket

	// Seed seeds both directions' random sources (each its own stream), so
	// the same seed and the same traffic give the same impairments.
	Seed uint64

	// VnetHdr says the tap carries each frame behind a virtio_net_hdr and
	// may hand over TCP segments to cut and checksums to finish (OpenTap
	// sets it up so; see vnet.go). Not for a socket standing in for a tap.
	VnetHdr bool

	// MTU, if not 0, is the link MTU of a hop in the middle, both ways:
	// longer IPv4 datagrams are fragmented, or with DF dropped and
	// answered with ICMP "fragmentation needed" from MTUFrom (invalid:
	// the datagram's destination), or with BlackHole dropped silently
	// (mtu.go).
	MTU       int
	BlackHole bool
	MTUFrom   netip.Addr

	Now  func() time.Time                 // nil: time.Now
	Logf func(format string, args ...any) // nil: silent
}

// Relay moves frames between a QEMU stream socket and a PacketPort,
// impairing each direction as configured. One thread does all of it: it
// sleeps in a single ppoll on the QEMU socket, the tap and a wake-up
// eventfd, and on each wakeup moves whatever both sides have ready. Every
// wakeup of the relay takes a host CPU from QEMU's vCPUs, so it wakes once
// per burst rather than once per direction and goroutine hand-off.
//
// The Impairers (and their waiting frames and counters) outlive a QEMU
// connection: a reconnecting QEMU continues the same seeded run.
type Relay struct {
	raw syscall.RawConn // the tap's
	now func() time.Time
	cfg Config

	running atomic.Bool // a Run is in progress; only one at a time

	out outPump // guest → tap
	in  inPump  // tap → guest
}

// Batching: a read of the QEMU socket takes up to streamBufSize bytes (many
// frames), and a wakeup reads up to maxBatch frames from the tap.
const (
	streamBufSize = 1 << 20
	maxBatch      = 512
)

// New returns a Relay on tap. It validates cfg.
func New(tap PacketPort, cfg Config) (*Relay, error) {
	if err := cfg.Out.Validate(); err != nil {
		return nil, fmt.Errorf("out: %w", err)
	}
	if err := cfg.In.Validate(); err != nil {
		return nil, fmt.Errorf("in: %w", err)
	}
	if err := validateMTU(cfg); err != nil {
		return nil, err
	}
	raw, err := tap.SyscallConn()
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	r := &Relay{raw: raw, now: cfg.Now, cfg: cfg}
	r.out = outPump{
		im:    NewImpairer[[]byte](cfg.Out, rand.New(rand.NewPCG(cfg.Seed, 0x6f7574))), // "out"
		sr:    NewStreamReader(streamBufSize),
		batch: make([][]byte, 0, maxBatch),
		owned: make([][]byte, 0, maxBatch),
		vnet:  cfg.VnetHdr,
	}
	r.in = inPump{
		im: NewImpairer[[]byte](cfg.In, rand.New(rand.NewPCG(cfg.Seed, 0x696e))), // "in"
		w:  make([]byte, 0, streamBufSize),
	}
	r.out.mtu = newMTULink(cfg, &r.out.im.Counters)
	r.in.mtu = newMTULink(cfg, &r.in.im.Counters)
	r.out.back = func(f []byte) { // an ICMP error for the guest: into the in direction
		if cap(r.in.w)-len(r.in.w) >= room {
			r.in.admit(r.now(), f)
		}
	}
	r.in.back = func(f []byte) { // an ICMP error for the tap: into the out direction
		b := r.out.pool.get(len(f))
		copy(b, f)
		r.out.batch = append(r.out.batch, b)
		r.out.owned = append(r.out.owned, b)
	}
	if cfg.VnetHdr {
		r.in.vnet = make([]byte, vnetHdrLen+maxTapRead)
		r.in.seg = make([]byte, 0, MaxFrame)
	}
	return r, nil
}

// Stats returns the counters of both directions.
func (r *Relay) Stats() (out, in Stats) {
	return r.out.im.Counters.Snapshot(), r.in.im.Counters.Snapshot()
}

// Run relays between conn (a connected QEMU stream socket) and the tap until
// QEMU closes the connection (nil), ctx is done (nil), or either side fails.
// It closes conn; it leaves the tap open.
func (r *Relay) Run(ctx context.Context, conn net.Conn) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: Run already in progress")
	}
	defer r.running.Store(false)
	q, err := detach(conn)
	if err != nil {
		return err
	}
	defer unix.Close(q)
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("eventfd", err)
	}
	defer unix.Close(wake)
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woken)
		unix.Write(wake, binary.NativeEndian.AppendUint64(nil, 1))
	})
	defer func() {
		if !stop() {
			<-woken // the wake-up is being written: let it finish before wake closes
		}
	}()

	r.out.reset()
	r.in.reset()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer r.batch()()
	var lerr error
	if err := r.raw.Control(func(tap uintptr) { lerr = r.loop(q, int(tap), wake) }); err != nil {
		return err
	}
	return lerr
}

// batch makes the calling thread SCHED_BATCH and returns what restores its
// policy. A woken batch thread does not preempt the one running: when QEMU
// writes a frame and wakes the relay, QEMU's vCPU thread goes on emulating
// (and writing more frames) and the relay runs on an idle CPU or at the next
// tick, finding a batch. Under SCHED_OTHER the relay preempted QEMU at every
// frame on a host with no core to spare, some 15,000 context switches a
// second in a bulk transfer. The price is latency under load (within a
// scheduler tick), which bulk TCP does not feel (adding 1 ms each way
// with -delay did not lower it).
func (r *Relay) batch() (restore func()) {
	old, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		r.cfg.Logf("keeping the scheduling policy: %v", err)
		return func() {}
	}
	attr := *old
	attr.Policy, attr.Flags = unix.SCHED_BATCH, 0
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		r.cfg.Logf("keeping the scheduling policy: %v", err)
		return func() {}
	}
	return func() { unix.SchedSetAttr(0, old, 0) }
}

// detach takes conn's socket out of Go's network poller: it keeps a
// duplicate of the descriptor and closes conn (which deregisters it), so
// frames arriving from QEMU wake only the relay's own ppoll, never an idle
// runtime thread as well.
func detach(conn net.Conn) (int, error) {
	defer conn.Close()
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("relay: a %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("dup", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return fd, nil
}

// The descriptors loop polls, by index.
const (
	pollQEMU = iota
	pollTap
	pollWake
)

// loop is Run's body on the descriptors q (QEMU), tap and wake. A direction
// whose output is held up (its destination would block) reads nothing more
// until that output is written; the other direction carries on.
func (r *Relay) loop(q, tap, wake int) error {
	fds := []unix.PollFd{{Fd: int32(q)}, {Fd: int32(tap)}, {Fd: int32(wake), Events: unix.POLLIN}}
	for {
		fds[pollQEMU].Events, fds[pollTap].Events = 0, 0
		if r.out.pending() {
			fds[pollTap].Events |= unix.POLLOUT
		} else {
			fds[pollQEMU].Events |= unix.POLLIN
		}
		if r.in.pending() {
			fds[pollQEMU].Events |= unix.POLLOUT
		} else {
			fds[pollTap].Events |= unix.POLLIN
		}
		if err := r.wait(fds); err != nil {
			return err
		}
		if fds[pollWake].Revents != 0 {
			return nil // ctx is done
		}
		now := r.now()
		var eof bool
		var qerr error // the frames QEMU sent before it is still go out
		if !r.out.pending() {
			if fds[pollQEMU].Revents != 0 {
				eof, qerr = r.out.read(q, now)
			}
			r.out.release(now)
		}
		if err := r.out.flush(tap); err != nil {
			return err
		}
		if qerr != nil || eof {
			return qerr // nil: QEMU went away; frames still waiting go to the next connection
		}
		if !r.in.pending() {
			if fds[pollTap].Revents != 0 {
				if err := r.in.read(tap, now); err != nil {
					return err
				}
			}
			r.in.release(now)
		}
		if err := r.in.flush(q); err != nil {
			return err
		}
	}
}

// wait sleeps in ppoll until one of fds is ready, the next frame an
// Impairer holds is due, or a signal arrives (then no Revents are set).
//
// The sleep is a raw system call, which the Go runtime does not see: to it
// this goroutine is simply running. Through the runtime's own syscall entry
// its monitor thread (sysmon) would find the P parked in one system call
// after another, take it away every 10 ms and then check back every 20 µs
// for a while: thousands of extra wakeups a second, each taking a host CPU
// from QEMU's vCPUs (measured: a fifth of the relay's CPU samples). The
// runtime still preempts the goroutine when it must (for a GC, or every
// 10 ms) by a signal, which ends the ppoll with EINTR.
func (r *Relay) wait(fds []unix.PollFd) error {
	next, ok := r.out.im.Next()
	if at, ok2 := r.in.im.Next(); ok2 && (!ok || at.Before(next)) {
		next, ok = at, true
	}
	var timeout *unix.Timespec
	if ok {
		ts := unix.NsecToTimespec(int64(max(next.Sub(r.now()), 0)))
		timeout = &ts
	}
	for i := range fds {
		fds[i].Revents = 0
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)),
		uintptr(unsafe.Pointer(timeout)), 0, 0, 0)
	if errno != 0 && errno != unix.EINTR {
		return os.NewSyscallError("ppoll", errno)
	}
	return nil
}

// outPump moves frames from the QEMU socket to the tap.
type outPump struct {
	im    *Impairer[[]byte]
	sr    *StreamReader
	pool  bufPool
	batch [][]byte // frames to write: views into sr's buffer or pooled buffers
	next  int      // batch[next:] is still to be written
	owned [][]byte // the pooled buffers in batch, freed after the write
	vnet  bool     // the tap wants a virtio_net_hdr before each frame

	mtu  *mtuLink     // the link MTU (nil: none)
	back func([]byte) // takes an ICMP error for the guest (mtu.go)
}

func (p *outPump) reset() {
	p.sr.Reset()
	p.done()
}

// pending reports frames the tap has not yet taken. They may be views into
// sr's buffer, so nothing more is read from QEMU until they are written.
func (p *outPump) pending() bool { return p.next < len(p.batch) }

// read reads once from QEMU and admits the frames it completes, also those
// before a read error or a broken length prefix. eof reports that QEMU
// closed the connection (mid-frame, err is io.ErrUnexpectedEOF).
func (p *outPump) read(q int, now time.Time) (eof bool, err error) {
	rerr := p.sr.Fill(fdReader(q))
	var bytes uint64
	var ferr error
	for {
		var f []byte
		if f, ferr = p.sr.Next(); f == nil {
			break
		}
		bytes += uint64(len(f))
		if p.mtu == nil {
			p.admit(now, f, false) // the fast path: no closure per frame
		} else {
			p.mtu.apply(f, func(g []byte) { p.admit(now, g, &g[0] != &f[0]) }, p.back)
		}
	}
	p.im.Counters.BytesIn.Add(bytes)
	switch {
	case ferr != nil:
		return false, ferr
	case rerr == io.EOF && p.sr.Buffered() > 0:
		return true, io.ErrUnexpectedEOF
	case rerr == io.EOF:
		return true, nil
	}
	return false, rerr
}

// admit queues frame f for the tap as its Impairer decides. f is a view
// into sr's buffer, or with transient a fragment the link MTU cut, which
// does not outlive the call and is copied.
func (p *outPump) admit(now time.Time, f []byte, transient bool) {
	p.im.Mark(f)
	switch v := p.im.Admit(now, len(f)); {
	case v.Drop:
	case v.Direct && transient:
		b := p.pool.get(len(f))
		copy(b, f)
		for range v.Copies {
			p.batch = append(p.batch, b)
		}
		p.owned = append(p.owned, b)
	case v.Direct:
		for range v.Copies {
			p.batch = append(p.batch, f)
		}
	default:
		b := p.pool.get(len(f))
		copy(b, f)
		p.im.Enqueue(v, b)
	}
}

// release queues the frames that are due for the tap.
func (p *outPump) release(now time.Time) {
	for {
		f, copies, ok := p.im.Pop(now)
		if !ok {
			return
		}
		for range copies {
			p.batch = append(p.batch, f)
		}
		p.owned = append(p.owned, f)
	}
}

// flush writes the batch to the tap, one write per frame, until the tap
// would block. A frame the tap refuses (EIO while the link is down, EINVAL
// for a runt) is counted in Errors and skipped.
func (p *outPump) flush(tap int) error {
	var bytes uint64
	defer func() { p.im.Counters.BytesOut.Add(bytes) }()
	for p.next < len(p.batch) {
		err := p.write(tap, p.batch[p.next])
		switch err {
		case nil:
			bytes += uint64(len(p.batch[p.next]))
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return nil
		case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.ENOBUFS:
			p.im.Counters.Errors.Add(1)
		default:
			return fmt.Errorf("%w: %w", errFatal, os.NewSyscallError("write", err))
		}
		p.next++
	}
	p.done()
	return nil
}

// write writes one frame to the tap, behind an empty virtio_net_hdr if the
// tap wants one (no offload asked: QEMU's e1000 segmented and checksummed
// what the guest offloaded).
func (p *outPump) write(tap int, f []byte) error {
	if !p.vnet {
		_, err := unix.Write(tap, f)
		return err
	}
	var none [vnetHdrLen]byte
	iov := [2]unix.Iovec{{Base: &none[0]}, {Base: unsafe.SliceData(f)}}
	iov[0].SetLen(vnetHdrLen)
	iov[1].SetLen(len(f))
	_, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(tap), uintptr(unsafe.Pointer(&iov[0])), 2)
	if errno != 0 {
		return errno
	}
	return nil
}

// done forgets the batch and recycles its pooled buffers.
func (p *outPump) done() {
	for k, b := range p.owned {
		p.pool.put(b)
		p.owned[k] = nil
	}
	clear(p.batch)
	p.batch, p.owned, p.next = p.batch[:0], p.owned[:0], 0
}

// inPump moves frames from the tap to the QEMU socket.
type inPump struct {
	im       *Impairer[[]byte]
	pool     bufPool
	w        []byte // frames with their length prefixes, written to QEMU in one go
	off      int    // w[off:] is still to be written
	outBytes uint64 // frame bytes in w, counted once written

	// With Config.VnetHdr: the tap's frames are read into vnet (header,
	// then up to 64 KiB of frame) and turned into wire frames, built in
	// seg when a segment is cut. Nil otherwise.
	vnet, seg []byte

	mtu  *mtuLink     // the link MTU (nil: none)
	back func([]byte) // takes an ICMP error for the tap (mtu.go)
	big  []byte       // a copy of a frame too big for the link (admitMTU)
}

// maxTapRead is the longest frame a tap with offloads hands over: a 64 KiB
// IP packet and its Ethernet header.
const maxTapRead = 65535 + ethLen

func (p *inPump) reset() { p.w, p.off, p.outBytes = p.w[:0], 0, 0 }

// pending reports bytes QEMU has not yet taken.
func (p *inPump) pending() bool { return p.off < len(p.w) }

// room is what one more frame may need in w: itself and its duplicate;
// roomVnet what one read from a tap with offloads may: 64 KiB cut into
// segments of at least 536 bytes, each with its own headers (up to 120
// bytes) and length prefix, and every one duplicated.
const (
	room     = 2 * (HeaderLen + MaxFrame)
	roomVnet = 2 * (maxTapRead + (maxTapRead/536+1)*(HeaderLen+120))
)

// read takes up to maxBatch frames from the tap, until it has none ready.
func (p *inPump) read(tap int, now time.Time) error {
	if p.vnet != nil {
		return p.readVnet(tap, now)
	}
	var bytes uint64
	defer func() { p.im.Counters.BytesIn.Add(bytes) }()
	for got := 0; got < maxBatch && cap(p.w)-len(p.w) >= room; got++ {
		// Read each frame straight to where it goes in w, behind room for
		// its length prefix: admit then copies it onto itself.
		slot := p.w[len(p.w)+HeaderLen : len(p.w)+HeaderLen+MaxFrame]
		n, err := readTap(tap, slot)
		if err != nil || n == 0 {
			return err
		}
		bytes += uint64(n)
		p.admitMTU(now, slot[:n])
	}
	return nil
}

// readVnet is read for a tap with offloads: each read may yield many wire
// frames, which are copied into w (or the Impairer's buffers) as they are
// cut.
func (p *inPump) readVnet(tap int, now time.Time) error {
	var bytes uint64
	defer func() { p.im.Counters.BytesIn.Add(bytes) }()
	for got := 0; got < maxBatch && cap(p.w)-len(p.w) >= roomVnet; got++ {
		n, err := readTap(tap, p.vnet)
		if err != nil || n == 0 {
			return err
		}
		if n <= vnetHdrLen {
			return fmt.Errorf("%w: a %d-byte read from a tap with virtio_net_hdr", errFatal, n)
		}
		bytes += uint64(n - vnetHdrLen)
		h := parseVnetHdr(p.vnet)
		if h.gsoType != vnetGSONone {
			p.im.Counters.Split.Add(1)
		}
		if err := wireFrames(h, p.vnet[vnetHdrLen:n], p.seg, func(f []byte) { p.admitMTU(now, f) }); err != nil {
			p.im.Counters.Errors.Add(1)
		}
	}
	return nil
}

// readTap reads one frame from the tap into b; 0 and no error when none is
// ready. Any error is fatal, and so is the end of the file: a tap never
// reads empty, and a socket standing in for one has closed.
func readTap(tap int, b []byte) (int, error) {
	n, err := fdReader(tap).Read(b)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errFatal, err)
	}
	return n, nil
}

// admitMTU admits frame f, or its fragments, within the link MTU.
func (p *inPump) admitMTU(now time.Time, f []byte) {
	if p.mtu == nil {
		p.admit(now, f)
		return
	}
	if p.vnet == nil && len(f) > ethLen+p.mtu.mtu {
		// f was read into w's free space, where admit appends: the
		// fragments would overwrite it while it is being cut.
		p.big = append(p.big[:0], f...)
		f = p.big
	}
	p.mtu.apply(f, func(f []byte) { p.admit(now, f) }, p.back)
}

// admit appends frame f to w as its Impairer decides, or hands it a copy to
// keep.
func (p *inPump) admit(now time.Time, f []byte) {
	p.im.Mark(f)
	switch v := p.im.Admit(now, len(f)); {
	case v.Drop:
	case v.Direct:
		for range v.Copies {
			p.w = AppendFrame(p.w, f)
		}
		p.outBytes += uint64(v.Copies * len(f))
	default:
		b := p.pool.get(len(f))
		copy(b, f)
		p.im.Enqueue(v, b)
	}
}

// release appends the frames that are due for QEMU, as many as fit.
func (p *inPump) release(now time.Time) {
	for cap(p.w)-len(p.w) >= room {
		f, copies, ok := p.im.Pop(now)
		if !ok {
			return
		}
		for range copies {
			p.w = AppendFrame(p.w, f)
		}
		p.outBytes += uint64(copies * len(f))
		p.pool.put(f)
	}
}

// flush writes w to QEMU until the socket would block.
func (p *inPump) flush(q int) error {
	for p.off < len(p.w) {
		n, err := unix.SendmsgN(q, p.w[p.off:], nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		switch err {
		case nil:
			p.off += n
		case unix.EINTR:
		case unix.EAGAIN:
			return nil
		default:
			return os.NewSyscallError("sendmsg", err)
		}
	}
	p.im.Counters.BytesOut.Add(p.outBytes)
	p.reset()
	return nil
}

// fdReader reads a non-blocking descriptor for StreamReader.Fill: 0 bytes
// and no error when nothing is there, io.EOF at the end.
type fdReader int

func (f fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f), b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
