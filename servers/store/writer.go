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
type Writer struct {
	c  kv
	ns string

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	// wmu serializes Flush, so that one key's writes reach the store in
	// order. Lock order: wmu, then mu.
	wmu sync.Mutex
	// mu guards pending and order.
	mu      sync.Mutex
	pending map[string][]byte // nil value: delete
	order   []string          // keys in pending, first come first written
}

// kv is what a Writer needs of the store (a *Client).
type kv interface {
	Put(ctx context.Context, ns, key string, value []byte) error
	Delete(ctx context.Context, ns, key string) error
}

// NewWriter starts a writer of namespace ns through c.
func NewWriter(c kv, ns string) *Writer {
	w := &Writer{c: c, ns: ns, kick: make(chan struct{}, 1), done: make(chan struct{}), pending: map[string][]byte{}}
	w.wg.Go(w.run)
	return w
}

// Put queues value (not copied: the caller hands it over) for key.
func (w *Writer) Put(key string, value []byte) {
	if value == nil {
		value = []byte{}
	}
	w.queue(key, value)
}

// Delete queues the deletion of key.
func (w *Writer) Delete(key string) { w.queue(key, nil) }

func (w *Writer) queue(key string, value []byte) {
	w.mu.Lock()
	if _, ok := w.pending[key]; !ok {
		w.order = append(w.order, key)
	}
	w.pending[key] = value
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
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
		value := w.pending[key]
		delete(w.pending, key)
		w.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		if value == nil {
			err = w.c.Delete(ctx, w.ns, key)
		} else {
			err = w.c.Put(ctx, w.ns, key, value)
		}
		cancel()
		if err != nil {
			log.Printf("store: writing %s/%s: %v", w.ns, key, err)
		}
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
