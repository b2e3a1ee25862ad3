package store

import "encoding/json"

// StatsNS is the namespace where components publish their counters, each
// under its own name: the one namespace every component shares (Access).
const StatsNS = "stats"

// Publisher keeps one value in the store up to date from a component's hot
// loop without ever blocking it: the newest value published is written by
// a Writer's goroutine; one not yet written is replaced by a newer one.
// Components use it for the counters `keepnet stats` shows.
type Publisher struct {
	w   *Writer
	key string
}

// NewPublisher starts a publisher of ns/key through c.
func NewPublisher(c *Client, ns, key string) *Publisher {
	return &Publisher{w: NewWriter(c, ns), key: key}
}

// Publish queues v (marshalled as JSON) to be written.
func (p *Publisher) Publish(v any) {
	if b, err := json.Marshal(v); err == nil {
		p.w.Put(p.key, b)
	}
}

// Close writes the last value and stops the publisher.
func (p *Publisher) Close() { p.w.Close() }
