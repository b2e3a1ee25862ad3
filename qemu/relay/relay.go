package relay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PacketPort is the network side: a file where each read returns one
// Ethernet frame and each write sends one, opened non-blocking so it
// supports deadlines. A tap device from OpenTap is one; so is one end of a
// SOCK_SEQPACKET socketpair wrapped with os.NewFile, which the tests and the
// benchmark use instead.
type PacketPort interface {
	SyscallConn() (syscall.RawConn, error)
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

var _ PacketPort = (*os.File)(nil)

// Config configures a Relay.
type Config struct {
	Out Impairment // frames from the guest: QEMU socket → tap
	In  Impairment // frames to the guest: tap → QEMU socket

	// Seed seeds both directions' random sources (each its own stream), so
	// the same seed and the same traffic give the same impairments.
	Seed uint64

	Now  func() time.Time                 // nil: time.Now
	Logf func(format string, args ...any) // nil: silent
}

// Relay moves frames between a QEMU stream socket and a PacketPort, one
// goroutine per direction, impairing each direction as configured. The
// Impairers (and their waiting frames and counters) outlive a QEMU
// connection: a reconnecting QEMU continues the same seeded run.
type Relay struct {
	tap PacketPort
	raw syscall.RawConn
	now func() time.Time
	cfg Config

	running atomic.Bool // a Run is in progress; only one at a time
	// aborted tells both pumps that Run is ending. Set it before pushing
	// the tap's deadlines into the past; a pump sets its own read deadline
	// and then checks it, so one of the two always wins.
	aborted atomic.Bool

	out outPump // owned by the guest→tap goroutine during Run
	in  inPump  // owned by the tap→guest goroutine during Run
}

// Batching: a pump moves up to this many frames per system call on the
// stream side (the tap side is one frame per read or write, but many per
// wakeup).
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
	r := &Relay{tap: tap, raw: raw, now: cfg.Now, cfg: cfg}
	r.out = outPump{
		im:    NewImpairer[[]byte](cfg.Out, rand.New(rand.NewPCG(cfg.Seed, 0x6f7574))), // "out"
		sr:    NewStreamReader(streamBufSize),
		batch: make([][]byte, 0, maxBatch),
		owned: make([][]byte, 0, maxBatch),
	}
	r.in = inPump{
		im: NewImpairer[[]byte](cfg.In, rand.New(rand.NewPCG(cfg.Seed, 0x696e))), // "in"
		w:  make([]byte, 0, streamBufSize),
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
	r.aborted.Store(false)
	r.tap.SetReadDeadline(time.Time{})
	r.tap.SetWriteDeadline(time.Time{})
	r.in.deadline = time.Time{}

	abort := sync.OnceFunc(func() {
		r.aborted.Store(true)
		conn.Close()
		past := time.Unix(1, 0)
		r.tap.SetReadDeadline(past)
		r.tap.SetWriteDeadline(past)
	})
	stop := context.AfterFunc(ctx, abort)
	defer stop()

	errc := make(chan error, 2)
	go func() { errc <- r.quiet(r.out.run(r, conn), "guest→tap") }()
	go func() { errc <- r.quiet(r.in.run(r, conn), "tap→guest") }()
	err := <-errc
	abort()
	if err2 := <-errc; err == nil {
		err = err2
	}
	r.tap.SetReadDeadline(time.Time{})
	r.tap.SetWriteDeadline(time.Time{})
	return err
}

// quiet turns the errors that only say "Run is ending" into nil.
func (r *Relay) quiet(err error, dir string) error {
	if err == nil || r.aborted.Load() && (errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)) {
		return nil
	}
	return fmt.Errorf("%s: %w", dir, err)
}

// outPump moves frames from the QEMU socket to the tap.
type outPump struct {
	im    *Impairer[[]byte]
	sr    *StreamReader
	pool  bufPool
	batch [][]byte // frames to write: views into sr's buffer or pooled buffers
	owned [][]byte // the pooled buffers in batch, freed after the write
}

func (p *outPump) run(r *Relay, conn net.Conn) error {
	var deadline time.Time
	for {
		if next, ok := p.im.Next(); ok {
			if !next.Equal(deadline) {
				conn.SetReadDeadline(next)
				deadline = next
			}
		} else if !deadline.IsZero() {
			conn.SetReadDeadline(time.Time{})
			deadline = time.Time{}
		}
		rerr := p.sr.Fill(conn)
		now := r.now()
		var bytes uint64
		for {
			f, err := p.sr.Next()
			if err != nil {
				return err
			}
			if f == nil {
				break
			}
			bytes += uint64(len(f))
			switch v := p.im.Admit(now, len(f)); {
			case v.Drop:
			case v.Direct:
				for range v.Copies {
					p.batch = append(p.batch, f)
				}
			default:
				b := p.pool.get(len(f))
				copy(b, f)
				p.im.Enqueue(v, b)
			}
			if len(p.batch) >= maxBatch-1 {
				if err := p.flush(r); err != nil {
					return err
				}
			}
		}
		p.im.Counters.BytesIn.Add(bytes)
		for {
			f, copies, ok := p.im.Pop(now)
			if !ok {
				break
			}
			for range copies {
				p.batch = append(p.batch, f)
			}
			p.owned = append(p.owned, f)
			if len(p.batch) >= maxBatch-1 {
				if err := p.flush(r); err != nil {
					return err
				}
			}
		}
		if err := p.flush(r); err != nil {
			return err
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, os.ErrDeadlineExceeded) && !r.aborted.Load():
		case rerr == io.EOF:
			if p.sr.Buffered() > 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		default:
			return rerr
		}
	}
}

// flush writes the batch to the tap, one write per frame, all in one
// wakeup. A frame the tap refuses (EIO while the link is down, EINVAL for a
// runt) is counted in Errors and skipped.
func (p *outPump) flush(r *Relay) error {
	if len(p.batch) == 0 {
		return nil
	}
	i := 0
	var bytes uint64
	var ferr error
	err := r.raw.Write(func(fd uintptr) bool {
		for i < len(p.batch) {
			_, err := unix.Write(int(fd), p.batch[i])
			switch err {
			case nil:
				bytes += uint64(len(p.batch[i]))
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			case unix.EIO, unix.EINVAL, unix.EMSGSIZE, unix.ENOBUFS:
				p.im.Counters.Errors.Add(1)
			default:
				ferr = fmt.Errorf("%w: %w", errFatal, os.NewSyscallError("write", err))
				return true
			}
			i++
		}
		return true
	})
	p.im.Counters.BytesOut.Add(bytes)
	for k, b := range p.owned {
		p.pool.put(b)
		p.owned[k] = nil
	}
	clear(p.batch)
	p.batch, p.owned = p.batch[:0], p.owned[:0]
	if err == nil {
		err = ferr
	}
	return err
}

// inPump moves frames from the tap to the QEMU socket.
type inPump struct {
	im       *Impairer[[]byte]
	pool     bufPool
	w        []byte    // frames with their length prefixes, written to QEMU in one go
	deadline time.Time // the tap's read deadline as last set by this pump
}

// room is what one more frame may need in w: itself and its duplicate.
const room = 2 * (HeaderLen + MaxFrame)

func (p *inPump) run(r *Relay, conn net.Conn) error {
	for {
		if next, ok := p.im.Next(); ok {
			if !next.Equal(p.deadline) {
				r.tap.SetReadDeadline(next)
				p.deadline = next
			}
		} else if !p.deadline.IsZero() {
			r.tap.SetReadDeadline(time.Time{})
			p.deadline = time.Time{}
		}
		if r.aborted.Load() {
			return nil
		}
		var rerr error
		var bytes, outBytes uint64
		err := r.raw.Read(func(fd uintptr) bool {
			now := r.now()
			got := 0
			for got < maxBatch && cap(p.w)-len(p.w) >= room {
				off := len(p.w)
				slot := p.w[off+HeaderLen : off+HeaderLen+MaxFrame]
				n, err := unix.Read(int(fd), slot)
				switch err {
				case nil:
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					return got > 0
				default:
					rerr = fmt.Errorf("%w: %w", errFatal, os.NewSyscallError("read", err))
					return true
				}
				got++
				if n == 0 {
					continue
				}
				bytes += uint64(n)
				switch v := p.im.Admit(now, n); {
				case v.Drop:
				case v.Direct:
					binary.BigEndian.PutUint32(p.w[off:off+HeaderLen], uint32(n))
					p.w = p.w[:off+HeaderLen+n]
					outBytes += uint64(v.Copies * n)
					if v.Copies == 2 {
						p.w = AppendFrame(p.w, slot[:n])
					}
				default:
					b := p.pool.get(n)
					copy(b, slot[:n])
					p.im.Enqueue(v, b)
				}
			}
			return true
		})
		p.im.Counters.BytesIn.Add(bytes)
		if rerr != nil {
			return rerr
		}
		now := r.now()
		for cap(p.w)-len(p.w) >= room {
			f, copies, ok := p.im.Pop(now)
			if !ok {
				break
			}
			for range copies {
				p.w = AppendFrame(p.w, f)
			}
			outBytes += uint64(copies * len(f))
			p.pool.put(f)
		}
		if len(p.w) > 0 {
			if _, err := conn.Write(p.w); err != nil {
				return err
			}
			p.im.Counters.BytesOut.Add(outBytes)
			p.w = p.w[:0]
		}
		if err != nil && !(errors.Is(err, os.ErrDeadlineExceeded) && !r.aborted.Load()) {
			return err
		}
	}
}
