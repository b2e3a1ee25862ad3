package store

import (
	"context"
	"testing"
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
