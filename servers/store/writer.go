package store

import (
	"context"
	"log"
	"sync"
	"time"
)

// Writer keeps a namespace of the store up to date from a component's hot
// loop without ever blocking it: Put and Delete queue the change and a
// goroutine writes it. Changes to one key reach the store in the order they
// were made; of several queued changes to a key only the newest is written.
// udp and tcp keep their sockets' records with it.
//
// Every change is numbered (Put and Delete return its number), and
// [Writer.Stored] says whether a change has been written: a component that
// must not answer a request before the state it saved is in the store
// (transport.Host.ReplyStored) holds the answer until then. A write the
// store refuses or that times out counts as done: the Client remembers it
// and replays it to the store when it is back (the store's restart
// protocol), so only a crash of the component during that outage loses it.
type Writer struct {
	c  kv
	ns string

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	// wmu serializes Flush, so that one key's writes reach the store in
	// order. Lock order: wmu, then mu.
	wmu sync.Mutex
	// mu guards the fields below it.
	mu      sync.Mutex
	pending map[string]change
	order   []string // keys in pending, first come first written
	last    uint64   // the number of the latest change queued
	writing uint64   // the first change the write under way stores; 0: none
}

// change is a key's newest queued value and the number of the first
// change to the key since its last write: that change and every later one
// to the key are stored by the key's next write.
type change struct {
	value []byte // nil: delete
	first uint64
}

// kv is what a Writer needs of the store (a *Client).
type kv interface {
	Put(ctx context.Context, ns, key string, value []byte) error
	Delete(ctx context.Context, ns, key string) error
}

// NewWriter starts a writer of namespace ns through c.
func NewWriter(c kv, ns string) *Writer {
	w := &Writer{c: c, ns: ns, kick: make(chan struct{}, 1), done: make(chan struct{}), pending: map[string]change{}}
	w.wg.Go(w.run)
	return w
}

// Put queues value (not copied: the caller hands it over) for key and
// returns the change's number.
func (w *Writer) Put(key string, value []byte) uint64 {
	if value == nil {
		value = []byte{}
	}
	return w.queue(key, value)
}

// Delete queues the deletion of key and returns the change's number.
func (w *Writer) Delete(key string) uint64 { return w.queue(key, nil) }

func (w *Writer) queue(key string, value []byte) uint64 {
	w.mu.Lock()
	w.last++
	n := w.last
	c, ok := w.pending[key]
	if !ok {
		w.order = append(w.order, key)
		c.first = n
	}
	c.value = value
	w.pending[key] = c
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return n
}

// Last is the number of the latest change queued (0: none yet).
func (w *Writer) Last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Stored reports whether change n and every change before it have been
// written (a change replaced by a newer one to its key before it was
// written, when that one has). A key changed again keeps its place in the
// queue, so what is not written yet is found by number, not by position.
func (w *Writer) Stored(n uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.writing != 0 && w.writing <= n {
		return false
	}
	for _, c := range w.pending {
		if c.first <= n {
			return false
		}
	}
	return n <= w.last
}

// Flush writes everything queued now; for tests and Close. A write the
// store refuses is logged: the next change to the key tries again.
func (w *Writer) Flush() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	for {
		w.mu.Lock()
		if len(w.order) == 0 {
			w.mu.Unlock()
			return
		}
		key := w.order[0]
		w.order = w.order[1:]
		c := w.pending[key]
		delete(w.pending, key)
		w.writing = c.first
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		if c.value == nil {
			err = w.c.Delete(ctx, w.ns, key)
		} else {
			err = w.c.Put(ctx, w.ns, key, c.value)
		}
		cancel()
		if err != nil {
			log.Printf("store: writing %s/%s: %v", w.ns, key, err)
		}
		w.mu.Lock()
		w.writing = 0
		w.mu.Unlock()
	}
}

func (w *Writer) run() {
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
			w.Flush()
		}
	}
}

// Close writes what is queued and stops the writer.
func (w *Writer) Close() {
	close(w.done)
	w.wg.Wait()
	w.Flush()
}
