package wiring

import (
	"os"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/keep"
	"keepnet/kernel/pool"
)

// joinPair is a wiring socket pair: init's end for the test to play init,
// and the component's end to Join on.
func joinPair(t *testing.T) (initEnd, component *Conn) {
	t.Helper()
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFile(bf)
	bf.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// Kept memory arrives in Setup.Kept, mapped: the memory init holds, with
// what was written there before (by init here; by the previous generation
// on a restart).
func TestJoinMapsKeptMemory(t *testing.T) {
	const size = 1 << 20
	initEnd, c := joinPair(t)
	mem, err := keep.Create("tcp.state", size)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	before, err := keep.Map(mem)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Unmap(before)
	copy(before[size-len("left before"):], "left before")

	initEnd.Send(Message{Type: TypeWelcome, Name: "tcp", Generation: 2})
	if err := initEnd.Send(Message{Type: TypeKept, Name: "tcp.state", Size: size}, mem); err != nil {
		t.Fatal(err)
	}
	initEnd.Send(Message{Type: TypeReady})
	s, err := Join(c, 2*time.Second)
	if err != nil {
		t.Fatalf("Join = %v", err)
	}
	b := s.Kept["tcp.state"]
	if len(s.Kept) != 1 || len(b) != size {
		t.Fatalf("Setup.Kept = %d regions, tcp.state of %d bytes; want 1, of %d", len(s.Kept), len(b), size)
	}
	defer keep.Unmap(b)
	if got := string(b[size-len("left before"):]); got != "left before" {
		t.Errorf("the component reads %q, want what was left before", got)
	}
	copy(b, "written after")
	if got := string(before[:len("written after")]); got != "written after" {
		t.Errorf("init's mapping reads %q, want what the component wrote", got)
	}
}

// A kept message must carry exactly its memory, and say its size.
func TestJoinRefusesBadKept(t *testing.T) {
	const size = 1 << 20
	mem, err := keep.Create("tcp.state", size)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	for _, tc := range []struct {
		name  string
		size  int
		files []*os.File
		want  string
	}{
		{"no descriptor", size, nil, "0 descriptors"},
		{"two descriptors", size, []*os.File{mem, mem}, "2 descriptors"},
		{"wrong size", size / 2, []*os.File{mem}, "init says"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			initEnd, c := joinPair(t)
			initEnd.Send(Message{Type: TypeKept, Name: "tcp.state", Size: tc.size}, tc.files...)
			initEnd.Send(Message{Type: TypeReady})
			if _, err := Join(c, 2*time.Second); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Join = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// A grant arrives in Setup.Peers as a Peer with no channel, its pools
// mapped: the owner's memory, writable when init sent the writable
// descriptor.
func TestJoinMapsGrants(t *testing.T) {
	initEnd, c := joinPair(t)
	own, err := pool.Create(7, 2, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	ref, _ := own.Alloc()
	b, _ := own.Bytes(ref)
	copy(b, "the owner's")

	initEnd.Send(Message{Type: TypeWelcome, Name: "tcp", Generation: 1})
	if err := initEnd.Send(Message{Type: TypeGrant, Peer: "httpd", Generation: 3, Pools: []PoolInfo{{Name: "httpd.io", ID: 7, Owner: "httpd", Bufs: 2, BufSize: 2048}}}, own.Fd()); err != nil {
		t.Fatal(err)
	}
	initEnd.Send(Message{Type: TypeReady})
	s, err := Join(c, 2*time.Second)
	if err != nil {
		t.Fatalf("Join = %v", err)
	}
	if len(s.Peers) != 1 || !s.Peers[0].Grant() || s.Peers[0].Name != "httpd" || s.Peers[0].Generation != 3 {
		t.Fatalf("Setup.Peers = %+v, want one grant of httpd generation 3", s.Peers)
	}
	g := s.Peers[0]
	defer g.Close()
	mapped := g.Pool(7)
	if mapped == nil {
		t.Fatal("the grant maps no pool 7")
	}
	got, _ := mapped.Bytes(ref)
	if string(got[:len("the owner's")]) != "the owner's" {
		t.Errorf("the grantee reads %q, want the owner's bytes", got[:len("the owner's")])
	}
	copy(got, "filled here")
	if string(b[:len("filled here")]) != "filled here" {
		t.Errorf("the owner reads %q, want what the grantee wrote", b[:len("filled here")])
	}
}
