package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// summary renders pairs as "key:len(value)" or "key=value" for short printable values.
func summary(kvs []KV) string {
	var parts []string
	for _, kv := range kvs {
		if len(kv.Value) <= 16 && !strings.ContainsAny(string(kv.Value), "v\x00") {
			parts = append(parts, kv.Key+"="+string(kv.Value))
		} else {
			parts = append(parts, fmt.Sprintf("%s:%d", kv.Key, len(kv.Value)))
		}
	}
	return strings.Join(parts, " ")
}

// memKVs returns what c remembers of ns, sorted.
func memKVs(c *Client, ns string) []KV {
	<-c.token
	defer func() { c.token <- struct{}{} }()
	var kvs []KV
	for _, k := range slices.Sorted(maps.Keys(c.mem[ns])) {
		kvs = append(kvs, KV{k, c.mem[ns][k]})
	}
	return kvs
}

// fast are client options for tests: short back-off, and a timeout that
// only catches a hang.
var fast = []Option{WithTimeout(time.Minute), WithBackoff(time.Millisecond, 20*time.Millisecond)}

func listOf(t *testing.T, path, ns string) string {
	t.Helper()
	c := Dial(path, fast...)
	defer c.Close()
	kvs, err := c.List(context.Background(), ns)
	if err != nil {
		t.Fatalf("fresh client: List(%s) error = %v", ns, err)
	}
	return summary(kvs)
}

func TestRoundTrip(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, NewServer())
	c := Dial(path, fast...)
	defer c.Close()
	ctx := context.Background()

	type step struct {
		op    string // put get delete list
		ns    string
		key   string
		value string
		want  string // get: value or "<none>"; list: summary
	}
	steps := []step{
		{op: "get", ns: "ip", key: "addr", want: "<none>"},
		{op: "list", ns: "ip", want: ""},
		{op: "put", ns: "ip", key: "addr", value: "10.0.2.15"},
		{op: "put", ns: "ip", key: "gw", value: "10.0.2.2"},
		{op: "put", ns: "tcp", key: "listen:80", value: "LISTEN"},
		{op: "get", ns: "ip", key: "addr", want: "10.0.2.15"},
		{op: "put", ns: "ip", key: "addr", value: "10.0.2.16"},
		{op: "get", ns: "ip", key: "addr", want: "10.0.2.16"},
		{op: "list", ns: "ip", want: "addr=10.0.2.16 gw=10.0.2.2"},
		{op: "list", ns: "tcp", want: "listen:80=LISTEN"},
		{op: "delete", ns: "ip", key: "gw"},
		{op: "delete", ns: "ip", key: "gw"},
		{op: "get", ns: "ip", key: "gw", want: "<none>"},
		{op: "put", ns: "ip", key: "empty", value: ""},
		{op: "get", ns: "ip", key: "empty", want: ""},
		{op: "list", ns: "ip", want: "addr=10.0.2.16 empty="},
	}
	for i, s := range steps {
		switch s.op {
		case "put":
			if err := c.Put(ctx, s.ns, s.key, []byte(s.value)); err != nil {
				t.Errorf("step %d: Put(%s/%s) error = %v", i, s.ns, s.key, err)
			}
		case "delete":
			if err := c.Delete(ctx, s.ns, s.key); err != nil {
				t.Errorf("step %d: Delete(%s/%s) error = %v", i, s.ns, s.key, err)
			}
		case "get":
			v, ok, err := c.Get(ctx, s.ns, s.key)
			got := string(v)
			if !ok {
				got = "<none>"
			}
			if err != nil || got != s.want {
				t.Errorf("step %d: Get(%s/%s) = %q, %v; want %q, nil", i, s.ns, s.key, got, err, s.want)
			}
		case "list":
			kvs, err := c.List(ctx, s.ns)
			if got := summary(kvs); err != nil || got != s.want {
				t.Errorf("step %d: List(%s) = %q, %v; want %q, nil", i, s.ns, got, err, s.want)
			}
		}
	}
	if got := summary(memKVs(c, "ip")); got != "addr=10.0.2.16 empty=" {
		t.Errorf("remembered(ip) = %q, want %q", got, "addr=10.0.2.16 empty=")
	}
}

// TestClientLimits: requests the store would refuse never leave the client.
// There is no store: a request that left would end in a timeout error.
func TestClientLimits(t *testing.T) {
	c := Dial("/nonexistent/store.sock", WithTimeout(time.Second))
	defer c.Close()
	ctx := context.Background()
	long := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"put namespace 65", func() error { return c.Put(ctx, long(MaxNamespace+1), "k", nil) }, ErrTooLarge},
		{"put key 257", func() error { return c.Put(ctx, "ns", long(MaxKey+1), nil) }, ErrTooLarge},
		{"put value 1MiB+1", func() error { return c.Put(ctx, "ns", "k", make([]byte, MaxValue+1)) }, ErrTooLarge},
		{"get key 257", func() error { _, _, err := c.Get(ctx, "ns", long(MaxKey+1)); return err }, ErrTooLarge},
		{"list namespace 65", func() error { _, err := c.List(ctx, long(MaxNamespace+1)); return err }, ErrTooLarge},
		{"put empty namespace", func() error { return c.Put(ctx, "", "k", nil) }, ErrBadRequest},
		{"put empty key", func() error { return c.Put(ctx, "ns", "", nil) }, ErrBadRequest},
		{"delete empty key", func() error { return c.Delete(ctx, "ns", "") }, ErrBadRequest},
	}
	for _, tt := range tests {
		if err := tt.do(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: error = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	if n := len(memKVs(c, "ns")); n != 0 {
		t.Errorf("remembered %d refused pairs, want 0", n)
	}
}

func TestConcurrentClients(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, NewServer())
	ctx := context.Background()
	shared := Dial(path, fast...)
	defer shared.Close()

	const clients, goroutinesPerShared, ops = 16, 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients+goroutinesPerShared)
	work := func(c *Client, ns string) {
		defer wg.Done()
		for i := range ops {
			key := fmt.Sprintf("k%02d", i)
			val := []byte(ns + "/" + key)
			if err := c.Put(ctx, ns, key, val); err != nil {
				errs <- err
				return
			}
			got, ok, err := c.Get(ctx, ns, key)
			if err != nil || !ok || string(got) != string(val) {
				errs <- fmt.Errorf("Get(%s/%s) = %q, %v, %v; want %q, true, nil", ns, key, got, ok, err, val)
				return
			}
			if i%2 == 1 {
				if err := c.Delete(ctx, ns, key); err != nil {
					errs <- err
					return
				}
			}
		}
	}
	for i := range clients {
		wg.Add(1)
		c := Dial(path, fast...)
		defer c.Close()
		go work(c, fmt.Sprintf("own%d", i))
	}
	for i := range goroutinesPerShared {
		wg.Add(1)
		go work(shared, fmt.Sprintf("shared%d", i))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for i := 0; i < ops; i += 2 {
		want = append(want, fmt.Sprintf("k%02d", i))
	}
	for _, ns := range []string{"own0", "own15", "shared0", "shared7"} {
		kvs, err := shared.List(ctx, ns)
		var got []string
		for _, kv := range kvs {
			got = append(got, kv.Key)
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%s) keys = %v, %v; want %v", ns, got, err, want)
		}
	}
}

// TestStoreRestart is the paper's rule: the store comes back empty and every
// client stores its state again, without code of its own.
func TestStoreRestart(t *testing.T) {
	path := sockPath(t)
	first := startServer(t, path, newServer(1, MaxBytes))
	c := Dial(path, fast...)
	defer c.Close()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Put(ctx, "ip", "addr", []byte("10.0.2.99")))
	must(c.Put(ctx, "ip", "gw", []byte("10.0.2.2")))
	must(c.Put(ctx, "tcp", "listen:80", []byte("LISTEN")))
	must(c.Put(ctx, "ip", "addr", []byte("10.0.2.15")))
	must(c.Put(ctx, "ip", "route", []byte("default")))
	must(c.Delete(ctx, "ip", "route"))
	if got := c.Epoch(); got != 1 {
		t.Errorf("Epoch() = %d, want 1", got)
	}

	first.kill(t)
	startServer(t, path, newServer(2, MaxBytes))
	if got := listOf(t, path, "ip"); got != "" {
		t.Fatalf("restarted store: List(ip) = %q, want empty", got)
	}

	// The client's next operation succeeds, on a store holding its state again.
	v, ok, err := c.Get(ctx, "ip", "addr")
	if err != nil || !ok || string(v) != "10.0.2.15" {
		t.Errorf("Get(ip/addr) after restart = %q, %v, %v; want %q, true, nil", v, ok, err, "10.0.2.15")
	}
	if got := c.Epoch(); got != 2 {
		t.Errorf("Epoch() after restart = %d, want 2", got)
	}
	for ns, want := range map[string]string{"ip": "addr=10.0.2.15 gw=10.0.2.2", "tcp": "listen:80=LISTEN"} {
		if got := listOf(t, path, ns); got != want {
			t.Errorf("fresh client: List(%s) = %q, want %q", ns, got, want)
		}
	}
}

// TestWriteWhileDown: a write that failed while the store was down is still
// the component's intent and reaches the next store.
func TestWriteWhileDown(t *testing.T) {
	t.Parallel()
	path := sockPath(t)
	first := startServer(t, path, newServer(1, MaxBytes))
	// A generous client timeout, so that reconnecting and replaying after
	// the store comes back fits even on a loaded machine; the operations
	// made while it is down give up at their own short deadline.
	c := Dial(path, WithTimeout(5*time.Second), WithBackoff(time.Millisecond, 10*time.Millisecond))
	defer c.Close()
	ctx := context.Background()
	if err := c.Put(ctx, "udp", "sock1", []byte("bound :53")); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "udp", "sock2", []byte("bound :67")); err != nil {
		t.Fatal(err)
	}
	first.kill(t)
	down, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := c.Put(down, "udp", "sock3", []byte("bound :123")); err == nil {
		t.Fatal("Put with the store down = nil error, want one")
	}
	down2, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if err := c.Delete(down2, "udp", "sock2"); err == nil {
		t.Fatal("Delete with the store down = nil error, want one")
	}
	startServer(t, path, newServer(2, MaxBytes))
	if _, _, err := c.Get(ctx, "other", "x"); err != nil {
		t.Fatalf("Get after the store came back: %v", err)
	}
	if got, want := listOf(t, path, "udp"), "sock1=bound :53 sock3=bound :123"; got != want {
		t.Errorf("fresh client: List(udp) = %q, want %q", got, want)
	}
}

// proxy forwards connections to a store; while swallow is set it drops
// every request unanswered, as a store that loses them would.
type proxy struct {
	swallow atomic.Bool
}

func startProxy(t *testing.T, path, target string) *proxy {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p := &proxy{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(c, s); c.Close() }()
			go func() {
				defer s.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if !p.swallow.Load() {
						s.Write(buf[:n])
					}
				}
			}()
		}
	}()
	return p
}

// TestUnsureSameStore: writes cut off by their deadline, while the same
// store keeps running, are resent on the next connection.
func TestUnsureSameStore(t *testing.T) {
	dir := t.TempDir()
	store, front := dir+"/store.sock", dir+"/front.sock"
	startServer(t, store, newServer(1, MaxBytes))
	p := startProxy(t, front, store)
	// The writes that must be cut off have a short deadline of their own;
	// the others may take what a loaded host needs.
	c := Dial(front, WithTimeout(time.Minute), WithBackoff(time.Millisecond, 10*time.Millisecond))
	defer c.Close()
	ctx := context.Background()
	if err := c.Put(ctx, "pf", "rule1", []byte("pass")); err != nil {
		t.Fatal(err)
	}
	p.swallow.Store(true)
	cut, cancelCut := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelCut()
	if err := c.Put(cut, "pf", "rule2", []byte("block")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Put(pf/rule2) into the void: error = %v, want %v", err, context.DeadlineExceeded)
	}
	cut, cancelCut = context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelCut()
	if err := c.Delete(cut, "pf", "rule1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Delete(pf/rule1) into the void: error = %v, want %v", err, context.DeadlineExceeded)
	}
	if got, want := listOf(t, store, "pf"), "rule1=pass"; got != want {
		t.Fatalf("List(pf) while requests are lost = %q, want %q", got, want)
	}
	p.swallow.Store(false)
	if _, _, err := c.Get(ctx, "pf", "x"); err != nil {
		t.Fatal(err)
	}
	if got, want := listOf(t, store, "pf"), "rule2=block"; got != want {
		t.Errorf("List(pf) after reconnect = %q, want %q", got, want)
	}
	// A cancelled context changes nothing, not even the client's memory.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Put(done, "pf", "rule3", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put(cancelled) error = %v, want %v", err, context.Canceled)
	}
	if got, want := summary(memKVs(c, "pf")), "rule2=block"; got != want {
		t.Errorf("remembered(pf) = %q, want %q", got, want)
	}
}

// TestRestore: a restarted component adopts its saved state, which then
// survives a store restart too.
func TestRestore(t *testing.T) {
	path := sockPath(t)
	first := startServer(t, path, newServer(1, MaxBytes))
	ctx := context.Background()
	old := Dial(path, fast...) // the udp server before its crash
	for _, k := range []string{"sock1", "sock2"} {
		if err := old.Put(ctx, "udp", k, []byte("open")); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	c := Dial(path, fast...) // the restarted udp server
	defer c.Close()
	kvs, err := c.Restore(ctx, "udp")
	if got, want := summary(kvs), "sock1=open sock2=open"; err != nil || got != want {
		t.Fatalf("Restore(udp) = %q, %v; want %q, nil", got, err, want)
	}
	reader := Dial(path, fast...) // pf reading udp's namespace
	defer reader.Close()
	if _, err := reader.List(ctx, "udp"); err != nil {
		t.Fatal(err)
	}
	if n := len(memKVs(reader, "udp")); n != 0 {
		t.Errorf("List remembered %d pairs, want 0", n)
	}

	first.kill(t)
	startServer(t, path, newServer(2, MaxBytes))
	if err := c.Put(ctx, "udp", "sock3", []byte("open")); err != nil {
		t.Fatal(err)
	}
	if got, want := listOf(t, path, "udp"), "sock1=open sock2=open sock3=open"; got != want {
		t.Errorf("fresh client: List(udp) = %q, want %q", got, want)
	}
}

// TestUnreachable: with no store, or a store that never answers, every
// operation fails within its timeout.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mute := dir + "/mute.sock"
	l, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accepts and reads, never replies
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { bufio.NewReader(c).WriteTo(discard{}) }()
		}
	}()

	const timeout = 150 * time.Millisecond
	for _, path := range []string{dir + "/absent.sock", mute} {
		c := Dial(path, WithTimeout(timeout), WithBackoff(5*time.Millisecond, 50*time.Millisecond))
		ctx := context.Background()
		ops := map[string]func() error{
			"put":    func() error { return c.Put(ctx, "ip", "k", []byte("v")) },
			"get":    func() error { _, _, err := c.Get(ctx, "ip", "k"); return err },
			"delete": func() error { return c.Delete(ctx, "ip", "k") },
			"list":   func() error { _, err := c.List(ctx, "ip"); return err },
		}
		for name, op := range ops {
			start := time.Now()
			err := op()
			d := time.Since(start)
			var oe *OpError
			if !errors.As(err, &oe) || !oe.Timeout() || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s on %s: error = %v, want a timeout *OpError", name, path, err)
			}
			// Not sooner; later only by what a loaded host adds (a hang
			// would take the test's own deadline).
			if d < timeout {
				t.Errorf("%s on %s: took %v, want at least %v", name, path, d, timeout)
			}
		}
		c.Close()

		// A caller's shorter deadline wins over the client's timeout (an
		// hour: only if it did not win would the Get take a minute).
		c = Dial(path, WithTimeout(time.Hour))
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		got := make(chan error, 1)
		go func() { _, _, err := c.Get(short, "ip", "k"); got <- err }()
		select {
		case err := <-got:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Get with a 20ms deadline on %s = %v, want a deadline error", path, err)
			}
		case <-time.After(time.Minute):
			t.Errorf("Get with a 20ms deadline on %s still waiting after a minute: the client's timeout won", path)
		}
		cancel()
		c.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestClose(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, NewServer())
	c := Dial(path, fast...)
	ctx := context.Background()
	if err := c.Put(ctx, "ip", "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Put(ctx, "ip", "k", []byte("v")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Put after Close error = %v, want %v", err, net.ErrClosed)
	}
	c.Close() // twice is fine
}
