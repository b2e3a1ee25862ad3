package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS answers A queries for "keepnet.test." with 10.77.0.99 and drops
// every other query it gets after the first `answer` ones.
func fakeDNS(t *testing.T, answer int) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if i >= answer {
				continue
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			r := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: q.Header.ID, Response: true},
				Questions: q.Questions,
				Answers: []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.AResource{A: [4]byte{10, 77, 0, 99}},
				}},
			}
			b, _ := r.Pack()
			pc.WriteTo(b, from)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestResolverCounts(t *testing.T) {
	server := fakeDNS(t, 3) // answers three, then goes silent
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var mu sync.Mutex
	var last Counts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	// An answer may take a loaded host a while: the timeout only has to
	// end the two queries nobody answers (it was 50 ms).
	go func() {
		done <- Run(ctx, Config{Conn: pc, Server: server, Name: "keepnet.test", Every: 10 * time.Millisecond, Timeout: 2 * time.Second,
			Report: func(c Counts) {
				mu.Lock()
				last = c
				mu.Unlock()
				if c.Sent == 5 {
					cancel()
				}
			}})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not finish five queries")
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Sent != 5 || last.Answered != 3 || last.Failed != 2 || last.LastAnswer != "10.77.0.99" || last.LocalAddr != pc.LocalAddr().String() {
		t.Errorf("counts = %+v, want 5 sent, 3 answered (10.77.0.99), 2 failed, on %v", last, pc.LocalAddr())
	}
}

// brokenConn is a socket whose every send fails, as one the stack lost.
type brokenConn struct{ net.PacketConn }

func (brokenConn) WriteTo([]byte, net.Addr) (int, error) { return 0, net.ErrClosed }

// A socket that fails query after query is broken: Run gives up after
// maxSocketFailures of them, so that the process is restarted with a new
// one, while queries nobody answers (timeouts) never end it.
func TestResolverGivesUpOnABrokenSocket(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var last Counts
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), Config{Conn: brokenConn{pc}, Server: netip.MustParseAddrPort("127.0.0.1:53"), Name: "keepnet.test",
			Every: time.Millisecond, Timeout: time.Second, Report: func(c Counts) { last = c }})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) || last.Sent != maxSocketFailures {
			t.Errorf("Run = %v after %d queries; want it to give up after %d with the socket's error", err, last.Sent, maxSocketFailures)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run went on with a broken socket")
	}
}
