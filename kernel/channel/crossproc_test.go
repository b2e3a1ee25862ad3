package channel

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"keepnet/kernel/pool"
)

// The cross-process tests re-execute the test binary as the peer (the
// helper-process pattern): helperEnv selects its role, and the channel's
// descriptors arrive as fds 3 (region), 4 (its wait eventfd), 5 (its wake
// eventfd); the pool's memfd, if any, as fd 6.
const (
	helperEnv = "KEEPNET_CHAN_HELPER" // "echo" or "pool"
	batchEnv  = "KEEPNET_CHAN_BATCH"
	poolEnv   = "KEEPNET_CHAN_POOL" // "id,nbufs,bufsize"

	opStop = 0xffff // the parent's last message; the helper exits
	opEcho = 1
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		if err := helper(role); err != nil {
			fmt.Fprintf(os.Stderr, "helper %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// reply is what the echo helper answers to req.
func reply(req Msg) Msg {
	req.Status = int32(req.ID % 1000)
	req.Arg[3] = req.Arg[0] ^ 0x5555
	return req
}

// helper is the peer process: side B, echoing every request until opStop.
func helper(role string) error {
	if role == "sleeper" {
		return sleeper()
	}
	batch, _ := strconv.Atoi(os.Getenv(batchEnv))
	if batch <= 0 {
		batch = 32
	}
	e, err := Open(os.NewFile(3, "mem"), os.NewFile(4, "wait"), os.NewFile(5, "wake"), B)
	if err != nil {
		return err
	}
	defer e.Close()
	var p *pool.Pool
	if role == "pool" {
		var id, nbufs, bufSize int
		if _, err := fmt.Sscanf(os.Getenv(poolEnv), "%d,%d,%d", &id, &nbufs, &bufSize); err != nil {
			return err
		}
		if p, err = pool.Open(uint32(id), os.NewFile(6, "pool"), nbufs, bufSize); err != nil {
			return err
		}
		defer p.Close()
	}
	buf := make([]Msg, batch)
	for {
		if err := e.Wait(30 * time.Second); err != nil {
			return err
		}
		n := e.Recv(buf)
		stop := false
		for i := range buf[:n] {
			m := &buf[i]
			if m.Op == opStop {
				stop = true
			}
			if p != nil && !m.Ref.IsZero() {
				b, err := p.Bytes(m.Ref)
				if err != nil {
					m.Status = -1
					continue
				}
				// Prove we see the parent's bytes, then write ours back
				// into the same buffer.
				var sum uint64
				for j, c := range b {
					sum += uint64(c)
					b[j] = ^c
				}
				m.Arg[0] = sum
				continue
			}
			*m = reply(*m)
		}
		for sent := 0; sent < n; {
			k := e.Send(buf[sent:n]...)
			if k == 0 {
				if err := e.Err(); err != nil {
					return err
				}
				runtime.Gosched()
			}
			sent += k
		}
		if stop {
			return nil
		}
	}
}

// startHelper runs the peer with side B of a fresh channel and returns side A.
func startHelper(tb testing.TB, role string, slots, batch int, extraEnv []string, extra ...*os.File) (*Endpoint, *exec.Cmd) {
	tb.Helper()
	p, err := New(slots)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close() // both sides hold their own copies once started
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role, batchEnv+"="+strconv.Itoa(batch))
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.ExtraFiles = append(p.Files(B), extra...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	a, err := p.Open(A)
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a, cmd
}

// stopHelper sends opStop, waits for its reply and for the helper to exit.
func stopHelper(tb testing.TB, a *Endpoint, cmd *exec.Cmd) {
	tb.Helper()
	for a.Send(Msg{Op: opStop}) == 0 {
		drain(a)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Fatalf("helper: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		tb.Fatal("helper did not exit")
	}
}

func drain(a *Endpoint) {
	buf := make([]Msg, 64)
	for a.Recv(buf) > 0 {
	}
}

// echo sends total requests in Send calls of at most batch messages, with
// at most window unanswered, and checks every reply: ids in order, payload
// transformed as reply says. It returns the first mismatch.
func echo(a *Endpoint, total, batch, window int) error {
	out, in := make([]Msg, batch), make([]Msg, batch)
	var sent, got uint64
	for got < uint64(total) {
		busy := false
		if k := min(batch, total-int(sent), window-int(sent-got)); k > 0 {
			for i := range out[:k] {
				out[i] = msg(sent + uint64(i) + 1)
			}
			n := a.Send(out[:k]...)
			sent += uint64(n)
			busy = n > 0
		}
		n := a.Recv(in)
		for _, m := range in[:n] {
			got++
			if want := reply(msg(got)); m != want {
				return fmt.Errorf("reply %d = %+v, want %+v", got, m, want)
			}
		}
		if n == 0 && !busy {
			if err := a.Wait(30 * time.Second); err != nil {
				return fmt.Errorf("after %d replies: %w", got, err)
			}
		}
	}
	return nil
}

func TestCrossProcessEcho(t *testing.T) {
	total := 1_000_000
	if testing.Short() {
		total = 100_000
	}
	a, cmd := startHelper(t, "echo", 256, 32, nil)
	start := time.Now()
	if err := echo(a, total, 32, 256); err != nil {
		cmd.Process.Kill()
		t.Fatal(err)
	}
	d := time.Since(start)
	stopHelper(t, a, cmd)
	t.Logf("%d messages echoed in %v (%.1f M/s); parent %+v", total, d, float64(total)/d.Seconds()/1e6, a.Stats())
}

// TestCrossProcessPool passes packets by reference: the parent allocates
// buffers and writes them, the helper reads them through its own mapping
// and writes back, and the parent frees each buffer when its reply comes.
func TestCrossProcessPool(t *testing.T) {
	const nbufs, rounds = 64, 2000
	p, err := pool.Create(9, nbufs, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Logf("pool backed by huge pages: %v", p.Huge())
	env := []string{fmt.Sprintf("%s=%d,%d,%d", poolEnv, p.ID(), p.Len(), p.BufSize())}
	a, cmd := startHelper(t, "pool", 64, 32, env, p.Fd())
	defer cmd.Process.Kill()

	pending := NewOutstanding(nbufs, 1)
	buf := make([]Msg, 32)
	sent, done := 0, 0
	for done < rounds {
		for sent < rounds {
			ref, ok := p.Alloc()
			if !ok {
				break
			}
			ref.Len = uint32(64 + sent%1900)
			b, err := p.Bytes(ref)
			if err != nil {
				t.Fatal(err)
			}
			for i := range b {
				b[i] = byte(sent + i)
			}
			m, err := pending.Add(Msg{Op: opEcho, Ref: ref, Arg: [4]uint64{uint64(sent)}})
			if err != nil {
				t.Fatal(err)
			}
			if a.Send(m) != 1 {
				t.Fatal("request ring full with fewer requests than slots")
			}
			sent++
		}
		if err := a.Wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		n := a.Recv(buf)
		for _, r := range buf[:n] {
			req, ok := pending.Complete(r)
			if !ok {
				t.Fatalf("reply %+v to no request", r)
			}
			b, err := p.Bytes(r.Ref)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]byte, len(b))
			var sum uint64
			for i := range want {
				c := byte(int(req.Arg[0]) + i)
				sum += uint64(c)
				want[i] = ^c
			}
			if r.Status != 0 || r.Arg[0] != sum {
				t.Fatalf("reply %+v: status %d sum %d, want 0 and %d", r, r.Status, r.Arg[0], sum)
			}
			if !bytes.Equal(b, want) {
				t.Fatalf("buffer %+v after the helper: not the inverted bytes", r.Ref)
			}
			if err := p.Free(r.Ref); err != nil {
				t.Fatal(err)
			}
			done++
		}
	}
	stopHelper(t, a, cmd)
	if p.Available() != nbufs {
		t.Errorf("free buffers at the end = %d, want %d", p.Available(), nbufs)
	}
}

// benchmarkCrossProcess measures request/reply pairs per second between
// two processes: b.N requests go out in Send calls of batch messages, the
// helper drains up to batch per Recv and echoes them, and the parent drains
// replies batch at a time. msgs/s counts requests; every one also crosses
// back as a reply.
func benchmarkCrossProcess(b *testing.B, batch int) {
	const slots = 1024
	a, cmd := startHelper(b, "echo", slots, batch, nil)
	defer cmd.Process.Kill()
	if err := echo(a, 10_000, batch, slots); err != nil { // the helper is up and warm
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := echo(a, b.N, batch, slots); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	stopHelper(b, a, cmd)
}

func BenchmarkCrossProcessBatch1(b *testing.B)  { benchmarkCrossProcess(b, 1) }
func BenchmarkCrossProcessBatch32(b *testing.B) { benchmarkCrossProcess(b, 32) }
