package wiring

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

func TestSendRecvWithFiles(t *testing.T) {
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := FromFile(bf)
	if err != nil {
		t.Fatal(err)
	}
	bf.Close()
	defer b.Close()

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := Message{Type: TypeChannel, Peer: "ip", Generation: 3, Side: 1, Pools: []PoolInfo{{Name: "ip.rx", ID: 7, Owner: "ip", Bufs: 1024, BufSize: 2048, Huge: true}}}
	if err := a.Send(want, w); err != nil {
		t.Fatal(err)
	}
	w.Close() // the receiver's copy must keep the pipe open

	got, files, err := b.Recv(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != want.Type || got.Peer != want.Peer || got.Generation != 3 || got.Side != 1 || len(got.Pools) != 1 || got.Pools[0] != want.Pools[0] {
		t.Errorf("Recv() = %+v, want %+v", got, want)
	}
	if len(files) != 1 {
		t.Fatalf("Recv() gave %d files, want 1", len(files))
	}
	files[0].Write([]byte("through the passed descriptor"))
	files[0].Close()
	if b, _ := io.ReadAll(r); string(b) != "through the passed descriptor" {
		t.Errorf("read %q from the pipe, want what was written through the passed end", b)
	}
}

func TestRecvTimeoutAndClose(t *testing.T) {
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFile(bf)
	if err != nil {
		t.Fatal(err)
	}
	bf.Close()
	defer b.Close()
	if _, _, err := b.Recv(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Recv on a silent socket = %v, want ErrTimeout", err)
	}
	a.Close()
	if _, _, err := b.Recv(time.Minute); !errors.Is(err, ErrClosed) {
		t.Errorf("Recv after the peer closed = %v, want ErrClosed", err)
	}
}

func TestSendTooManyFiles(t *testing.T) {
	a, bf, _ := Pair()
	defer a.Close()
	defer bf.Close()
	files := make([]*os.File, MaxFiles+1)
	for i := range files {
		files[i] = bf
	}
	if err := a.Send(Message{Type: TypeReady}, files...); err == nil {
		t.Error("Send with too many descriptors succeeded")
	}
}
