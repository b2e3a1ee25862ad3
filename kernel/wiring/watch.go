package wiring

import (
	"errors"
	"fmt"
	"log"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"keepnet/kernel/channel"
)

// Watcher reads a wiring socket after Join, for a component whose loop
// sleeps in poll(2): each neighbour generation announced is queued on C,
// and a ping or a test hook is kept for the loop's next Alive; any of them
// makes Fd readable.
type Watcher struct {
	C    <-chan *Peer
	fd   int // eventfd, readable while something waits for the loop
	conn *Conn
	wg   sync.WaitGroup

	ping  atomic.Uint64          // Seq of the last ping not answered yet; 0: none
	hook  atomic.Pointer[string] // the test hook init asked for, not run yet
	hooks map[string]func()      // by name; set before Watch returns, then read-only
}

// Watch starts watching c. It ends when c is closed; call Close after that.
// The test hooks of hooks (by name; HookSpin and HookDeadlock are built in)
// run when init asks and EnvTestHooks is set.
func Watch(c *Conn, hooks ...Hook) (*Watcher, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("wire: eventfd: %w", err)
	}
	channel.Steady(fd) // open until Close: the loop's sleeps arm it once
	ch := make(chan *Peer, 16)
	w := &Watcher{C: ch, fd: fd, conn: c, hooks: builtinHooks()}
	for _, h := range hooks {
		w.hooks[h.Name] = h.Run
	}
	enabled := TestHooksEnabled()
	w.wg.Go(func() {
		defer close(ch)
		for {
			m, files, err := c.Recv(-1)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					log.Printf("wiring: %v", err)
				}
				return
			}
			switch m.Type {
			case TypeChannel, TypeGrant:
				open := openPeer
				if m.Type == TypeGrant {
					open = openGrant
				}
				p, err := open(m, files)
				if err != nil {
					log.Printf("wiring: %v", err)
					return
				}
				ch <- p
			case TypePing:
				closeAll(files)
				w.ping.Store(m.Seq)
			case TypeArm:
				closeAll(files)
				armFault(m.Fault)
				continue
			case TypeHook:
				closeAll(files)
				if !enabled {
					log.Printf("wiring: ignoring test hook %q: test hooks are off", m.Name)
					continue
				}
				name := m.Name
				w.hook.Store(&name)
			default:
				closeAll(files)
				log.Printf("wiring: ignoring unexpected %q", m.Type)
				continue
			}
			w.wake()
		}
	})
	return w, nil
}

// ArmFault arms a fault site in this process: kernel/fault's ArmSeeded in
// a faulty image, nil otherwise (see the package doc, "Fault injection").
var ArmFault func(FaultArm)

// armFault carries out an Arm message.
func armFault(a *FaultArm) {
	switch {
	case a == nil:
		log.Printf("wiring: ignoring an arm message without a site")
	case ArmFault == nil:
		log.Printf("wiring: ignoring arm of fault site %d: this build has no fault sites", a.Site)
	default:
		log.Printf("wiring: arming fault site %d (after %d, probability %g)", a.Site, a.After, a.Prob)
		ArmFault(*a)
	}
}

func (w *Watcher) wake() { unix.Write(w.fd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) }

// Fd is readable while announcements, a ping or a hook wait for the loop.
func (w *Watcher) Fd() int { return w.fd }

// Drain resets Fd's readiness; call it before taking from C.
func (w *Watcher) Drain() {
	var b [8]byte
	unix.Read(w.fd, b[:])
}

// Alive is what the component's loop calls every round: it answers the last
// ping that came since the previous call, and runs the test hook init asked
// for, if any, in the caller's goroutine. See the package doc, "Hang
// detection": only a loop that runs answers.
func (w *Watcher) Alive() {
	if seq := w.ping.Swap(0); seq != 0 {
		// An error means the socket is gone; the watcher ends then.
		w.conn.Send(Message{Type: TypePong, Seq: seq})
	}
	if h := w.hook.Swap(nil); h != nil {
		run, ok := w.hooks[*h]
		if !ok {
			log.Printf("wiring: no test hook %q here", *h)
			return
		}
		log.Printf("wiring: running test hook %q", *h)
		run()
	}
}

// Close waits for the watching goroutine (the socket must be closed) and
// releases the eventfd.
func (w *Watcher) Close() {
	w.wg.Wait()
	channel.Unsteady(w.fd)
	unix.Close(w.fd)
}
