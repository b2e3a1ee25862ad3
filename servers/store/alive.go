package store

import (
	"time"

	"keepnet/kernel/loop"
	"keepnet/kernel/wiring"
)

// joinTimeout bounds joining init's wiring.
const joinTimeout = 10 * time.Second

// AnswerInit joins the wiring socket init passed (kernel/wiring) and answers
// init's pings until it is closed, which the returned function does. The
// store has no neighbours; the socket is for hang detection: each answer
// takes the store's lock, so a store whose data stays locked (a deadlock, a
// request stuck while holding it) or whose process is stopped does not
// answer, and init restarts it. Test hooks (wiring.HookSpin...) run in the
// answering goroutine.
func (s *Server) AnswerInit() (stop func(), err error) {
	conn, _, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		return nil, err
	}
	w, err := wiring.Watch(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.answer(w)
	}()
	return func() {
		conn.Close() // ends the watcher, then answer
		<-done
		w.Close()
	}, nil
}

// answer is the store's loop for init: wait for the watcher, take and drop
// the lock, answer.
func (s *Server) answer(w *wiring.Watcher) {
	// The wait is the servers' sleep (kernel/loop.Sleep, parked in Go's
	// netpoller: "How a process sleeps" in kernel/channel): a poll(2)
	// blocking in the kernel kept the P in a system call, and sysmon
	// looked every few microseconds to 10 ms for each of init's pings.
	peers := loop.FromWatcher(w)
	for {
		loop.Sleep(nil, peers, time.Second)
		select {
		case p, ok := <-w.C:
			if !ok {
				return // init closed the socket
			}
			p.Close() // no neighbour is expected
		default:
		}
		s.mu.Lock()
		s.mu.Unlock()
		w.Alive()
	}
}
