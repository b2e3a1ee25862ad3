package relay

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkRelay pushes frames one way through a Relay between two
// socketpairs (no QEMU, no tap) and reports frames/s and MB/s of Ethernet
// frames. The test's own ends (encoding, one read per frame on the wire
// side) run on the same machine and are part of the figure.
//
//	go test ./qemu/relay -run XXX -bench Relay -benchtime 2000000x
func BenchmarkRelay(b *testing.B) {
	for _, imp := range []struct {
		name string
		c    Impairment
	}{
		{"clean", Impairment{}},
		{"1%loss+dup+reorder", Impairment{Drop: 0.01, Dup: 0.01, Reorder: 0.01}},
	} {
		for _, size := range []int{64, 1514} {
			b.Run(fmt.Sprintf("out/%s/%d", imp.name, size), func(b *testing.B) { benchOut(b, imp.c, size) })
			b.Run(fmt.Sprintf("in/%s/%d", imp.name, size), func(b *testing.B) { benchIn(b, imp.c, size) })
		}
	}
}

func report(b *testing.B, frames, size int, d time.Duration) {
	b.ReportMetric(float64(frames)/d.Seconds(), "frames/s")
	b.ReportMetric(float64(frames*size)/d.Seconds()/1e6, "MB/s")
}

// benchOut: guest (stream, batches of 256 frames) → relay → wire (seqpacket).
func benchOut(b *testing.B, c Impairment, size int) {
	g := newRig(b, Config{Out: c, Seed: 1})
	var chunk []byte
	for i := range 256 {
		chunk = AppendFrame(chunk, frame(i, size))
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := g.guest.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, MaxFrame)
	// Frames lost on purpose are not waited for: count what arrives.
	want := b.N
	if c.Drop > 0 {
		want = b.N * 98 / 100
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for range want {
		if _, err := g.wire.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	report(b, want, size, time.Since(start))
}

// benchIn: wire (seqpacket, one write per frame) → relay → guest (stream).
func benchIn(b *testing.B, c Impairment, size int) {
	g := newRig(b, Config{In: c, Seed: 1})
	f := frame(1, size)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := g.wire.Write(f); err != nil {
				return
			}
		}
	}()
	want := b.N
	if c.Drop > 0 {
		want = b.N * 98 / 100
	}
	s := NewStreamReader(streamBufSize)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for got := 0; got < want; {
		if err := s.Fill(g.guest); err != nil {
			b.Fatal(err)
		}
		for {
			f, err := s.Next()
			if err != nil {
				b.Fatal(err)
			}
			if f == nil {
				break
			}
			got++
		}
	}
	report(b, want, size, time.Since(start))
}

// BenchmarkSeqpacketBaseline is the wire side alone (one write and one read
// per frame over a SOCK_SEQPACKET socketpair, no relay): the ceiling
// BenchmarkRelay's figures should be read against.
func BenchmarkSeqpacketBaseline(b *testing.B) {
	for _, size := range []int{64, 1514} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			w, r := socketpair(b, unix.SOCK_SEQPACKET)
			f := frame(1, size)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := w.Write(f); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, MaxFrame)
			b.SetBytes(int64(size))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if _, err := r.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			report(b, b.N, size, time.Since(start))
		})
	}
}
