package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// running is a store serving on a Unix socket for one test.
type running struct {
	srv    *Server
	cancel context.CancelFunc
	done   chan error
}

// startServer serves srv on path until the test ends or kill is called.
func startServer(t *testing.T, path string, srv *Server) *running {
	t.Helper()
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%q) error = %v", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() { r.kill(t) })
	return r
}

// kill stops the store as a crash would: listener and every connection closed.
func (r *running) kill(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve() did not return a minute after its context ended")
	}
	r.done = nil
}

func sockPath(t *testing.T) string { return filepath.Join(t.TempDir(), "s.sock") }

// exchange writes one raw frame and reads the reply.
func exchange(t *testing.T, c net.Conn, r *bufio.Reader, frame []byte) (reply, error) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return reply{}, err
	}
	b, err := readFrame(r, maxReplyBody)
	if err != nil {
		return reply{}, err
	}
	return decodeReply(b)
}

// rawFrame prefixes a hand-made body with its length.
func rawFrame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// TestWireDialogue talks to the server byte by byte, as any client would.
func TestWireDialogue(t *testing.T) {
	path := sockPath(t)
	srv := newServer(0xfeed, MaxBytes)
	startServer(t, path, srv)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)

	list := appendList(nil, []KV{{"addr", []byte("10.0.2.15")}, {"gw", []byte("10.0.2.2")}})
	steps := []struct {
		send       []byte
		wantID     uint64
		wantStatus status
		wantBody   []byte // nil: don't care (error messages)
	}{
		{appendRequest(nil, &request{id: 1, op: opHello}), 1, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 2, op: opPut, ns: "ip", key: "gw", value: []byte("10.0.2.2")}), 2, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 3, op: opPut, ns: "ip", key: "addr", value: []byte("10.0.2.99")}), 3, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 4, op: opPut, ns: "ip", key: "addr", value: []byte("10.0.2.15")}), 4, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 5, op: opGet, ns: "ip", key: "addr"}), 5, statusOK, []byte("10.0.2.15")},
		{appendRequest(nil, &request{id: 6, op: opGet, ns: "tcp", key: "addr"}), 6, statusNotFound, []byte{}},
		{appendRequest(nil, &request{id: 7, op: opPut, ns: "ip", key: "tmp", value: []byte("x")}), 7, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 8, op: opDelete, ns: "ip", key: "tmp"}), 8, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 9, op: opDelete, ns: "ip", key: "tmp"}), 9, statusOK, []byte{}},
		{appendRequest(nil, &request{id: 10, op: opList, ns: "ip"}), 10, statusOK, list},
		{appendRequest(nil, &request{id: 11, op: opList, ns: "none"}), 11, statusOK, []byte{0, 0, 0, 0}},
		{appendRequest(nil, &request{id: 12, op: opPut, key: "k"}), 12, statusBadRequest, nil},
		{appendRequest(nil, &request{id: 13, op: 77, ns: "ip"}), 13, statusBadRequest, nil},
		{appendRequest(nil, &request{id: 14, op: opGet, ns: "ip", key: strings.Repeat("k", MaxKey+1)}), 14, statusTooLarge, nil},
		{appendRequest(nil, &request{id: 15, op: opList, ns: strings.Repeat("n", MaxNamespace+1)}), 15, statusTooLarge, nil},
		{appendRequest(nil, &request{id: 16, op: opPut, ns: "ip", key: "k", value: make([]byte, MaxValue+1)}), 16, statusTooLarge, nil},
		{rawFrame([]byte{1, 2, 3}), 0, statusBadRequest, nil},
		{rawFrame(append(appendRequest(nil, &request{id: 17, op: opGet, ns: "ip", key: "gw"})[lenSize:], 'x')), 17, statusBadRequest, nil},
		// The connection survives every refusal above.
		{appendRequest(nil, &request{id: 18, op: opGet, ns: "ip", key: "gw"}), 18, statusOK, []byte("10.0.2.2")},
	}
	for i, s := range steps {
		got, err := exchange(t, c, rd, s.send)
		if err != nil {
			t.Fatalf("step %d: exchange(%x) error = %v", i, s.send[:min(len(s.send), 40)], err)
		}
		if got.id != s.wantID || got.epoch != 0xfeed || got.status != s.wantStatus {
			t.Errorf("step %d: reply {id %d epoch %#x status %d}, want {id %d epoch 0xfeed status %d} (%s)",
				i, got.id, got.epoch, got.status, s.wantID, s.wantStatus, got.payload)
		}
		if s.wantBody != nil && !bytes.Equal(got.payload, s.wantBody) {
			t.Errorf("step %d: reply payload = %q, want %q", i, got.payload, s.wantBody)
		}
	}

	// A frame longer than any request: the server hangs up without reading it.
	if _, err := exchange(t, c, rd, binary.BigEndian.AppendUint32(nil, maxRequestBody+1)); !errors.Is(err, io.EOF) {
		t.Errorf("oversized frame: exchange() error = %v, want %v", err, io.EOF)
	}
}

// TestMemoryCap fills a small store past its cap.
func TestMemoryCap(t *testing.T) {
	path := sockPath(t)
	// Each pair costs len("ns")+len(key)+len(value)+64.
	startServer(t, path, newServer(1, 1000))
	c := Dial(path)
	defer c.Close()
	ctx := context.Background()
	v := func(n int) []byte { return bytes.Repeat([]byte{'v'}, n) }
	steps := []struct {
		op      op
		key     string
		value   []byte
		wantErr error
	}{
		{opPut, "a", v(500), nil},     // 567
		{opPut, "b", v(500), ErrFull}, // 567+567 > 1000
		{opPut, "a", v(900), nil},     // replaces: 967
		{opPut, "b", v(1), ErrFull},   // 967+68 > 1000
		{opPut, "a", v(100), nil},     // 167
		{opPut, "b", v(500), nil},     // 167+567 = 734
		{opPut, "a", v(900), ErrFull}, // 734-167+967 > 1000: a keeps its 100 bytes
		{opPut, "c", v(199), nil},     // 734+266 = 1000 exactly
		{opPut, "d", v(0), ErrFull},   // 1000+67
		{opDelete, "c", nil, nil},     // 734
		{opPut, "d", v(0), nil},       // 801
	}
	for i, s := range steps {
		var err error
		if s.op == opPut {
			err = c.Put(ctx, "ns", s.key, s.value)
		} else {
			err = c.Delete(ctx, "ns", s.key)
		}
		if !errors.Is(err, s.wantErr) || (err != nil) != (s.wantErr != nil) {
			t.Errorf("step %d: %v(ns/%s, %d bytes) error = %v, want %v", i, s.op, s.key, len(s.value), err, s.wantErr)
		}
	}
	kvs, err := c.List(ctx, "ns")
	if err != nil {
		t.Fatal(err)
	}
	want := "a:100 b:500 d="
	if got := summary(kvs); got != want {
		t.Errorf("List(ns) = %s, want %s", got, want)
	}
	// The refused writes are not remembered for replay.
	if got := summary(memKVs(c, "ns")); got != want {
		t.Errorf("remembered(ns) = %s, want %s", got, want)
	}
}

// TestFullCap fills the real MaxBytes with 1 MiB values.
func TestFullCap(t *testing.T) {
	t.Parallel()
	path := sockPath(t)
	startServer(t, path, NewServer())
	// 63 MiB go each way: a loaded host takes seconds for that.
	c := Dial(path, WithTimeout(time.Minute))
	defer c.Close()
	ctx := context.Background()
	value := make([]byte, MaxValue)
	stored := 0
	for i := range 70 {
		err := c.Put(ctx, "big", string(rune('A'+i)), value)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatalf("Put(big/%c) error = %v", 'A'+i, err)
		}
		stored++
	}
	// 64 pairs would need 64 MiB plus 64×(3+1+64) bytes.
	if stored != MaxBytes/MaxValue-1 {
		t.Errorf("stored %d MiB values before ErrFull, want %d", stored, MaxBytes/MaxValue-1)
	}
	kvs, err := c.List(ctx, "big")
	if err != nil || len(kvs) != stored {
		t.Errorf("List(big) = %d pairs, %v; want %d, nil", len(kvs), err, stored)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	// Creates missing directories.
	path := filepath.Join(dir, "run", "keepnet", "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%q) error = %v", path, err)
	}
	// A live store is not stolen from.
	if l2, err := Listen(path); err == nil {
		l2.Close()
		t.Errorf("Listen(%q) with a live listener = nil error, want one", path)
	}
	// A stale socket is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("Listen(%q) over a stale socket error = %v", path, err)
	}
	l.Close()
	// A regular file is not removed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep"), 0o644)
	if l, err := Listen(file); err == nil {
		l.Close()
		t.Errorf("Listen(%q) over a regular file = nil error, want one", file)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("regular file content = %q, want %q", b, "keep")
	}
}
