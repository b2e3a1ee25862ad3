package wiring

import (
	"errors"
	"fmt"
	"log"
	"sync"

	"golang.org/x/sys/unix"
)

// Watcher delivers the neighbour generations announced on a wiring socket
// after Join, to a component whose loop sleeps in poll(2): each arrival is
// queued on C and makes Fd readable.
type Watcher struct {
	C  <-chan *Peer
	fd int // eventfd, readable while announcements are queued
	wg sync.WaitGroup
}

// Watch starts watching c. It ends when c is closed; call Close after that.
func Watch(c *Conn) (*Watcher, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("wire: eventfd: %w", err)
	}
	ch := make(chan *Peer, 16)
	w := &Watcher{C: ch, fd: fd}
	w.wg.Go(func() {
		defer close(ch)
		for {
			p, err := NextPeer(c, -1)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					log.Printf("wiring: %v", err)
				}
				return
			}
			ch <- p
			unix.Write(fd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		}
	})
	return w, nil
}

// Fd is readable while announcements wait on C.
func (w *Watcher) Fd() int { return w.fd }

// Drain resets Fd's readiness; call it before taking from C.
func (w *Watcher) Drain() {
	var b [8]byte
	unix.Read(w.fd, b[:])
}

// Close waits for the watching goroutine (the socket must be closed) and
// releases the eventfd.
func (w *Watcher) Close() {
	w.wg.Wait()
	unix.Close(w.fd)
}
