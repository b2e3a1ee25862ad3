package store

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Publisher keeps one value in the store up to date from a component's hot
// loop without ever blocking it: Publish hands the newest value to a
// goroutine that writes it; a value not yet written is replaced by a newer
// one. Components use it for the counters `keepnet stats` shows.
type Publisher struct {
	c       *Client
	ns, key string
	timeout time.Duration

	mu      sync.Mutex
	pending []byte // newest value not yet written; nil when none
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewPublisher starts a publisher of ns/key through c.
func NewPublisher(c *Client, ns, key string) *Publisher {
	p := &Publisher{c: c, ns: ns, key: key, timeout: 2 * time.Second, kick: make(chan struct{}, 1), done: make(chan struct{})}
	p.wg.Go(p.run)
	return p
}

// Publish queues v (marshalled as JSON) to be written.
func (p *Publisher) Publish(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.pending = b
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *Publisher) run() {
	for {
		select {
		case <-p.done:
			return
		case <-p.kick:
		}
		p.mu.Lock()
		b := p.pending
		p.pending = nil
		p.mu.Unlock()
		if b == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		p.c.Put(ctx, p.ns, p.key, b) // best effort: the next Publish tries again
		cancel()
	}
}

// Close stops the publisher; a value not yet written is dropped.
func (p *Publisher) Close() {
	close(p.done)
	p.wg.Wait()
}
