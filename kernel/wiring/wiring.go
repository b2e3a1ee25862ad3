// Package wire is how init wires the multiserver stack together: each
// component has one SOCK_SEQPACKET Unix socket to init (file descriptor 3),
// over which shared memory — channels to its neighbours, packet pools, DMA
// regions, kept memory — arrives as file descriptors (SCM_RIGHTS), each with a small JSON
// header saying what it is.
//
// # Restart protocol
//
//  1. A component starts and prepares what needs no neighbour (a driver
//     resets its device first: after that it cannot DMA into memory the
//     previous generation posted).
//  2. It sends Hello.
//  3. Init answers with Welcome (its name and generation), its own pools,
//     regions and kept memory, then one Channel per neighbour that is present, then Ready.
//     A Channel carries the peer's name and generation, the channel's
//     shared memory and wake-up descriptors, and the peer's pools.
//  4. Every neighbour already present receives a fresh Channel to the new
//     generation too: that is how it learns of the restart, and its cue to
//     resubmit what it had in flight on the old channel, with new request
//     ids (kernel/channel.Outstanding).
//  5. A component that mapped a pool of an earlier generation of a peer
//     sends Release when it holds no reference into it any more (a driver:
//     once it has reset its device). Init frees a superseded pool only when
//     every holder has released it, so a device never DMAs into freed memory.
//
// # Hang detection
//
// Once a component has joined, init sends it Ping about twice a second, and
// the component answers Pong from its main loop: the loop calls
// Watcher.Alive every round, which answers the pings that came since the
// last round. The answer comes from the loop and not from the goroutine that
// reads the socket, so a loop that spins, deadlocks or is stopped (SIGSTOP)
// answers nothing, and init's supervisor kills and restarts the component
// (boot/supervisor, "Hang detection").
//
// Why pings over this socket rather than a heartbeat counter in shared
// memory that init reads: a counter shows progress only while there is work,
// so init would also need to know whether the component has work (its
// channels' fill levels) to tell idle from stuck. A ping is work the loop
// does even when idle: a loop that answers is not hung, whatever its load,
// and one that does not is, with no knowledge of its channels in init. The
// cost is one atomic swap per round, and a wake-up and one datagram each
// way per half second.
//
// Test hooks: with keepnet.testhooks=1 on the kernel command line init
// passes EnvTestHooks to every component and accepts the control verb
// "hook"; it sends Hook with the hook's name, and the component's loop runs
// it (Watcher.Alive): HookSpin never returns, HookDeadlock deadlocks the
// loop with a second goroutine, and a component may add its own
// (Watcher.OnHook: the driver's device hooks). Without EnvTestHooks a
// component ignores every Hook.
//
// Fault injection: a component of a faulty image (images, `make image
// FAULTS=1`) arms the fault site an Arm message names, in the goroutine
// that reads the socket, so that a loop already stuck can still be armed
// and disarmed. Its copy of this package has a file the image build adds,
// which sets ArmFault to kernel/fault's; in a normal image ArmFault is nil,
// nothing links kernel/fault, and an Arm is logged and ignored.
//
// Messages are one datagram each: the JSON header, and up to MaxFiles
// descriptors in the same sendmsg.
package wiring

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Message types.
const (
	TypeHello   = "hello"   // component -> init: I am up (after resetting any device)
	TypeWelcome = "welcome" // init -> component: your name and generation
	TypePool    = "pool"    // init -> component: a packet pool (1 fd)
	TypeRegion  = "region"  // init -> component: a DMA region (a pool) kept across restarts (1 fd)
	TypeKept    = "kept"    // init -> component: memory kept across restarts (1 fd)
	TypeChannel = "channel" // init -> component: a channel to a peer (memfd, 2 eventfds) and the peer's pools
	TypeGrant   = "grant"   // init -> component: pools of a component not its neighbour, granted to it (one fd each)
	TypeReady   = "ready"   // init -> component: the initial wiring is complete
	TypeRelease = "release" // component -> init: I hold nothing in this pool any more
	TypeUp      = "up"      // component -> init: I serve (this generation is ready: boot/supervisor, "Readiness")
	TypePing    = "ping"    // init -> component: answer from your loop (Seq)
	TypePong    = "pong"    // component -> init: my loop runs (Seq of the last ping)
	TypeHook    = "hook"    // init -> component: run the test hook Name (only with EnvTestHooks)
	TypeArm     = "arm"     // init -> component: arm the fault site Fault (a faulty image only: kernel/fault)
)

// MaxFiles bounds the descriptors in one message.
const MaxFiles = 16

// maxHeader bounds one JSON header.
const maxHeader = 8 << 10

// PoolInfo describes a packet pool.
type PoolInfo struct {
	Name    string `json:"name"`  // e.g. "ip.rx"
	ID      uint32 `json:"id"`    // unique for the boot; pool refs carry it
	Owner   string `json:"owner"` // the component that allocates from it
	Bufs    int    `json:"bufs"`
	BufSize int    `json:"bufSize"`
	Huge    bool   `json:"huge"` // backed by huge pages (physically contiguous per 2 MiB)
}

// Message is one header. Which fields matter depends on Type.
type Message struct {
	Type       string `json:"type"`
	Name       string `json:"name,omitempty"`       // welcome: the component; region, kept: its name; hook: the hook
	Generation int    `json:"generation,omitempty"` // welcome: the component's; channel, grant: the peer's
	Peer       string `json:"peer,omitempty"`       // channel, grant: the pools' owner
	// Side is which end of a channel this is (0 or 1); the two ends
	// send on different rings.
	Side  int        `json:"side,omitempty"`
	Pool  *PoolInfo  `json:"pool,omitempty"`  // pool, region, release
	Pools []PoolInfo `json:"pools,omitempty"` // channel: the peer's pools, one fd each after the channel's 3; grant: one fd each
	Seq   uint64     `json:"seq,omitempty"`   // ping, pong
	Size  int        `json:"size,omitempty"`  // kept: its size in bytes
	Fault *FaultArm  `json:"fault,omitempty"` // arm
}

// FaultArm says which fault site to arm and when it fires (kernel/fault.
// ArmSeeded); Site 0 disarms.
type FaultArm struct {
	Site  uint32  `json:"site"`
	After uint64  `json:"after,omitempty"`
	Prob  float64 `json:"prob,omitempty"`
	Seed  uint64  `json:"seed,omitempty"`
}

// Conn is one end of a wiring socket. It is safe to Close while another
// goroutine is in Recv (which then returns ErrClosed).
type Conn struct {
	c           *net.UnixConn
	sendTimeout time.Duration // set before use; read by Send
}

// FD is the descriptor a component finds its wiring socket on.
const FD = 3

// FromFile wraps a wiring socket, e.g. os.NewFile(wire.FD, "wire") in a
// component. The file is duplicated; the caller may close it.
func FromFile(f *os.File) (*Conn, error) {
	nc, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		nc.Close()
		return nil, fmt.Errorf("wire: descriptor %d is not a Unix socket", f.Fd())
	}
	return &Conn{c: uc}, nil
}

// Pair makes a connected pair: init keeps one end, the component inherits
// the other (as its fd 3).
func Pair() (initEnd *Conn, componentEnd *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("wire: socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "wire-init")
	defer f.Close()
	c, err := FromFile(f)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c, os.NewFile(uintptr(fds[1]), "wire"), nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// SetSendTimeout bounds every later Send: a peer that does not read must
// not stall the sender.
func (c *Conn) SetSendTimeout(d time.Duration) { c.sendTimeout = d }

// Send sends m with files attached. The files stay open in the sender.
func (c *Conn) Send(m Message, files ...*os.File) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("wire: %d descriptors in one message, at most %d", len(files), MaxFiles)
	}
	hdr, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if c.sendTimeout > 0 {
		c.c.SetWriteDeadline(time.Now().Add(c.sendTimeout))
	}
	if _, _, err := c.c.WriteMsgUnix(hdr, oob, nil); err != nil {
		return fmt.Errorf("wire: sending %s: %w", m.Type, err)
	}
	return nil
}

// ErrClosed is returned by Recv when either end closed the socket.
var ErrClosed = errors.New("wire: socket closed")

// ErrTimeout is returned by Recv when nothing came in time.
var ErrTimeout = errors.New("wire: timeout")

// Release tells init that this process maps pool id no more: a pool of a
// neighbour's superseded generation, closed with its Peer (Peer.Retire).
// Init frees a superseded pool once every process it gave the pool to has
// released it or restarted; a holder that never says so keeps it, huge
// pages and all, for as long as it lives. A failure is logged: init is
// gone, and this process ends soon with it.
func (c *Conn) Release(id uint32) {
	if err := c.Send(Message{Type: TypeRelease, Pool: &PoolInfo{ID: id}}); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Printf("wiring: releasing pool %d: %v", id, err)
	}
}

// Recv waits (at most timeout; negative means forever) for one message and
// returns it with the descriptors that came with it, each close-on-exec.
func (c *Conn) Recv(timeout time.Duration) (Message, []*os.File, error) {
	if timeout >= 0 {
		c.c.SetReadDeadline(time.Now().Add(timeout))
	} else {
		c.c.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, maxHeader)
	oob := make([]byte, unix.CmsgSpace(MaxFiles*4))
	n, oobn, flags, _, err := c.c.ReadMsgUnix(buf, oob)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return Message{}, nil, ErrTimeout
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF):
		return Message{}, nil, ErrClosed
	case err != nil:
		return Message{}, nil, fmt.Errorf("wire: %w", err)
	}
	files, ferr := parseRights(oob[:oobn])
	if n == 0 && len(files) == 0 {
		return Message{}, nil, ErrClosed
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(files)
		return Message{}, nil, errors.New("wire: message truncated")
	}
	if ferr != nil {
		closeAll(files)
		return Message{}, nil, ferr
	}
	var m Message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		closeAll(files)
		return Message{}, nil, fmt.Errorf("wire: bad header: %w", err)
	}
	return m, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("wire: control message: %w", err)
	}
	var files []*os.File
	for _, cm := range msgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "wire-fd"))
		}
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
