package itest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"keepnet/apps/splitmix"
)

// TestHelperUDP is not a test of its own: the UDP tests run the test binary
// inside their namespace with UDP_MODE set, and this talks to the appliance
// from there. It prints one result line starting "result:".
func TestHelperUDP(t *testing.T) {
	mode := os.Getenv("UDP_MODE")
	if mode == "" {
		return // run only as the helper
	}
	target := os.Getenv("UDP_TARGET")
	n, _ := strconv.Atoi(os.Getenv("UDP_COUNT"))
	switch mode {
	case "echo":
		udpEchoSizes(t, target, n)
	case "big":
		udpEchoBig(t, target)
	case "stream":
		udpStream(t, target, n)
	case "paced":
		udpPaced(t, target, n)
	case "closed":
		udpClosedPort(t, target)
	case "flood":
		udpFlood(t, target, n)
	case "rate":
		udpRate(t, target, n)
	default:
		t.Fatalf("unknown UDP_MODE %q", mode)
	}
}

// udpEchoSizes sends n datagrams of sizes 1..8000 one at a time and checks
// each echo byte for byte. Nothing may be lost on the idle link.
func udpEchoSizes(t *testing.T, target string, n int) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := splitmix.New(42)
	buf := make([]byte, 9000)
	lost, bad := 0, 0
	start := time.Now()
	for i := 0; i < n; i++ {
		size := i%8000 + 1
		msg := make([]byte, size)
		r.Read(msg)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got, err := c.Read(buf)
		if err != nil {
			lost++
			continue
		}
		if !bytes.Equal(buf[:got], msg) {
			bad++
		}
	}
	fmt.Printf("result: sent=%d lost=%d bad=%d seconds=%.1f\n", n, lost, bad, time.Since(start).Seconds())
}

// udpEchoBig sends datagrams of 1,453, 3,000, 8,000 and 20,000 bytes,
// each fragmented on the way there and back over a 1,500-byte link (the
// first just over IPv6's 1,452 of UDP payload), trying each up to three
// times, and checks each echo byte for byte.
func udpEchoBig(t *testing.T, target string) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := splitmix.New(7)
	buf := make([]byte, 65536)
	lost, bad := 0, 0
	for _, size := range []int{1453, 3000, 8000, 20000} {
		msg := make([]byte, size)
		r.Read(msg)
		got := -1
		for range 3 {
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("write %d bytes: %v", size, err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if got, err = c.Read(buf); err == nil {
				break
			}
		}
		switch {
		case got < 0:
			lost++
		case !bytes.Equal(buf[:got], msg):
			bad++
		}
	}
	fmt.Printf("result: sent=4 lost=%d bad=%d\n", lost, bad)
}

// udpStream sends n small datagrams, one every 5 ms, each carrying its
// sequence number, reads echoes concurrently, and reports the longest
// silence between echoes and how many came back.
func udpStream(t *testing.T, target string, n int) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	var got, refused int
	var gap time.Duration
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		last := time.Now()
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Read(buf); errors.Is(err, syscall.ECONNREFUSED) {
				refused++ // an ICMP port unreachable came back
				continue
			} else if err != nil {
				return
			}
			now := time.Now()
			if got > 0 && now.Sub(last) > gap {
				gap = now.Sub(last)
			}
			last = now
			got++
		}
	}()
	for i := 0; i < n; i++ {
		c.Write([]byte(fmt.Sprintf("seq %d", i)))
		time.Sleep(5 * time.Millisecond)
	}
	<-done
	fmt.Printf("result: sent=%d received=%d refused=%d gap_ms=%d\n", n, got, refused, gap.Milliseconds())
}

// Pacing of the "paced" mode: one datagram every pacedEvery (200/s), each
// pacedSize bytes; after the last one, echoes are awaited for pacedDrain.
const (
	pacedEvery = 5 * time.Millisecond
	pacedSize  = 64
	pacedDrain = 10 * time.Second
)

// udpPaced sends n datagrams of pacedSize bytes on a fixed schedule, one
// every pacedEvery from the start (a late send does not push the later ones
// back), each carrying its sequence number, and counts the distinct echoes
// that come back until all have or pacedDrain has passed since the last
// send. It reports what was lost (and the first lost ranges), the longest
// silence between echoes and how far the sender fell behind its schedule.
func udpPaced(t *testing.T, target string, n int) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	seen := make([]bool, n)
	var got, dup, bad, refused int
	var gap time.Duration
	allIn := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2*pacedSize)
		var last time.Time
		for got < n {
			c.SetReadDeadline(time.Now().Add(time.Minute)) // the sender ends the wait
			m, err := c.Read(buf)
			if errors.Is(err, syscall.ECONNREFUSED) {
				refused++
				continue
			} else if err != nil {
				return
			}
			seq, ok := pacedSeq(buf[:m])
			switch {
			case !ok || seq >= n:
				bad++
				continue
			case seen[seq]:
				dup++
				continue
			}
			seen[seq] = true
			now := time.Now()
			if got > 0 && now.Sub(last) > gap {
				gap = now.Sub(last)
			}
			last = now
			got++
		}
		close(allIn)
	}()
	start := time.Now()
	var behind time.Duration
	msg := make([]byte, pacedSize)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * pacedEvery)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else {
			behind = max(behind, -d)
		}
		binary.BigEndian.PutUint32(msg, pacedMagic)
		binary.BigEndian.PutUint32(msg[4:], uint32(i))
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	sending := time.Since(start)
	select {
	case <-allIn:
	case <-time.After(pacedDrain):
	}
	c.Close() // ends the reader if it still waits
	<-done
	var lost []string
	nlost := 0
	for i := 0; i < n; i++ {
		if seen[i] {
			continue
		}
		j := i
		for j+1 < n && !seen[j+1] {
			j++
		}
		nlost += j - i + 1
		if len(lost) < 8 {
			lost = append(lost, fmt.Sprintf("%d-%d", i, j))
		}
		i = j
	}
	if len(lost) == 0 {
		lost = []string{"none"}
	}
	fmt.Printf("result: sent=%d received=%d lost=%d dup=%d bad=%d refused=%d gap_ms=%d behind_ms=%d send_s=%.2f lost_ranges=%s\n",
		n, got, nlost, dup, bad, refused, gap.Milliseconds(), behind.Milliseconds(), sending.Seconds(), strings.Join(lost, ","))
}

// pacedMagic starts every datagram of the "paced" mode, before its
// big-endian sequence number.
const pacedMagic = 0x6b6e7064 // "knpd"

// pacedSeq is the sequence number of a "paced" datagram.
func pacedSeq(b []byte) (int, bool) {
	if len(b) != pacedSize || binary.BigEndian.Uint32(b) != pacedMagic {
		return 0, false
	}
	return int(binary.BigEndian.Uint32(b[4:])), true
}

// udpClosedPort sends to a port nobody listens on from a connected socket:
// the appliance's ICMP port unreachable makes the next read fail with
// "connection refused".
func udpClosedPort(t *testing.T, target string) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	refused := false
	buf := make([]byte, 64)
	for i := 0; i < 5 && !refused; i++ {
		c.Write([]byte("anyone?"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(buf)
		refused = errors.Is(err, syscall.ECONNREFUSED)
	}
	fmt.Printf("result: refused=%v\n", refused)
}

// udpFlood sends n datagrams as fast as it can.
func udpFlood(t *testing.T, target string, n int) {
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 512)
	sent := 0
	for i := 0; i < n; i++ {
		if _, err := c.Write(msg); err == nil {
			sent++
		}
	}
	fmt.Printf("result: sent=%d\n", sent)
}

// Window and timing of the "rate" mode.
const (
	rateWindow  = 32                     // datagrams in flight
	rateSeconds = 5 * time.Second        // how long it measures
	rateStall   = 200 * time.Millisecond // no echo for this long: the window is lost
)

// udpRate keeps rateWindow datagrams of size bytes in flight to an echo
// server for rateSeconds, each carrying a sequence number: a new one goes
// out for every echo that comes back, and when none has come for
// rateStall the window counts as lost and is sent afresh. It reports the
// echoed datagrams per second and their payload rate one way, and how many
// were lost. The window keeps either stack from being flooded past what
// it can answer, so the figure is what the stack sustains, not how much
// it drops.
func udpRate(t *testing.T, target string, size int) {
	if size < 8 {
		t.Fatalf("UDP_COUNT=%d: the rate mode's datagram size is at least 8", size)
	}
	c, err := net.Dial("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, size), make([]byte, size+1)
	var sent, echoed, stalls uint64
	send := func() {
		binary.BigEndian.PutUint64(msg, sent)
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("write %d: %v", sent, err)
		}
		sent++
	}
	start := time.Now()
	end := start.Add(rateSeconds)
	for range rateWindow {
		send()
	}
	for time.Now().Before(end) {
		c.SetReadDeadline(time.Now().Add(rateStall))
		m, err := c.Read(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			stalls++
			for range rateWindow {
				send()
			}
		case err != nil && !errors.Is(err, syscall.ECONNREFUSED):
			t.Fatalf("read: %v", err)
		case err == nil && m == size && binary.BigEndian.Uint64(buf) < sent:
			echoed++
			send()
		}
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("result: size=%d sent=%d echoed=%d lost=%d stalls=%d pps=%.0f mbps=%.2f seconds=%.2f\n",
		size, sent, echoed, sent-echoed-rateWindow, stalls, float64(echoed)/secs, float64(echoed)*float64(size)*8/secs/1e6, secs)
}
