package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestPublisher(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, newServer(1, MaxBytes))
	c := Dial(path)
	defer c.Close()
	p := NewPublisher(c, "stats", "ip")
	defer p.Close()
	for i := 1; i <= 100; i++ {
		p.Publish(map[string]int{"FramesIn": i}) // never blocks
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, ok, err := c.Get(context.Background(), "stats", "ip")
		var v map[string]int
		if err == nil && ok && json.Unmarshal(b, &v) == nil && v["FramesIn"] == 100 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats/ip = %s, %v, %v; want the last published value (FramesIn 100)", b, ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
