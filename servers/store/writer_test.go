package store

import (
	"context"
	"testing"
	"time"
)

func TestWriter(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, newServer(1, MaxBytes))
	c := Dial(path)
	defer c.Close()
	w := NewWriter(c, "tcp")
	w.Put("1", []byte("first"))
	w.Put("2", []byte("gone soon"))
	w.Put("1", []byte("newest")) // only the newest write of a key lands
	w.Delete("2")
	w.Close()
	got := map[string]string{}
	kvs, err := c.List(context.Background(), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		got[kv.Key] = string(kv.Value)
	}
	if len(got) != 1 || got["1"] != "newest" {
		t.Errorf("List(tcp) after the writer closed = %v, want only 1=newest", got)
	}
}

// gatedKV is a store whose writes wait until the test lets each one go.
type gatedKV struct {
	next    chan struct{}
	written chan string
}

func (g *gatedKV) Put(_ context.Context, _, key string, _ []byte) error {
	<-g.next
	g.written <- key
	return nil
}

func (g *gatedKV) Delete(ctx context.Context, ns, key string) error { return g.Put(ctx, ns, key, nil) }

// TestWriterStored: a change counts as stored once it and every change
// before it are written, found by number: a key changed again keeps its
// place in the queue, and its first unwritten change is stored only when
// its newest value is.
func TestWriterStored(t *testing.T) {
	g := &gatedKV{next: make(chan struct{}), written: make(chan string, 8)}
	w := NewWriter(g, "udp")
	defer func() { close(g.next); w.Close() }()
	a1 := w.Put("a", []byte("1"))
	b := w.Put("b", []byte("2"))
	a2 := w.Delete("a")
	if a1 != 1 || b != 2 || a2 != 3 || w.Last() != 3 {
		t.Fatalf("numbers %d %d %d, Last %d; want 1 2 3, 3", a1, b, a2, w.Last())
	}
	if w.Stored(a1) || w.Stored(0) != true || w.Stored(4) {
		t.Errorf("before any write: Stored(1) %v, Stored(0) %v, Stored(4) %v; want false true false", w.Stored(a1), w.Stored(0), w.Stored(4))
	}
	g.next <- struct{}{}
	if k := <-g.written; k != "a" {
		t.Fatalf("first write of %q, want a", k)
	}
	// "a" (changes 1 and 3) is written; "b" (2) waits.
	for deadline := time.Now().Add(5 * time.Second); !w.Stored(a1); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("change 1 not stored after a's write")
		}
	}
	if w.Stored(b) || w.Stored(a2) {
		t.Errorf("with b unwritten: Stored(2) %v, Stored(3) %v; want false", w.Stored(b), w.Stored(a2))
	}
	a3 := w.Put("a", []byte("4")) // behind b now
	if w.Stored(a3) || !w.Stored(a1) {
		t.Errorf("a queued again: Stored(4) %v, Stored(1) %v; want false, true", w.Stored(a3), w.Stored(a1))
	}
	g.next <- struct{}{}
	<-g.written
	g.next <- struct{}{}
	<-g.written
	for deadline := time.Now().Add(5 * time.Second); !w.Stored(a3); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("change 4 not stored after every write")
		}
	}
}
