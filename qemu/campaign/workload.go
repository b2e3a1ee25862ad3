package campaign

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"keepnet/apps/splitmix"
)

// The workload is the traffic a campaign keeps running through the
// appliance while it injects faults, each stream checked byte for byte:
//
//	download   GET /bytes (httpd, port 80), compared with the splitmix stream
//	echo       one long-lived TCP connection to port 7, a numbered line every
//	           100 ms, each echoed line compared with the one sent
//	conns      a new TCP connection to port 7 every second, a line each way
//	udp        numbered datagrams to port 7 every 50 ms on one socket, each
//	           echo compared with what was sent
//	dns        a DNS server on the namespace's address answering the
//	           appliance's resolver, which asks every second over the one
//	           UDP socket it keeps all its life
//	ping       ICMP echo every 200 ms (a raw socket: the worker runs as root)
//
// It runs in the campaign's network namespace, in a process of its own (the
// keepnet binary re-executed under `ip netns exec` as the hidden command
// campaign-worker), and writes Events on its standard output, one JSON
// object a line: a tick with every counter every 100 ms, and at once
// whatever goes wrong. The campaign (Timeline) judges the runs from them.

// Counters are the workload's progress since it started, each only growing.
type Counters struct {
	DownBytes   int64 `json:"down_bytes"`   // correct bytes downloaded
	EchoLines   int64 `json:"echo_lines"`   // lines the long-lived session got back intact
	ConnsOK     int64 `json:"conns_ok"`     // new connections that echoed their line
	ConnsFailed int64 `json:"conns_failed"` // ... that did not
	UDPSent     int64 `json:"udp_sent"`
	UDPEchoed   int64 `json:"udp_echoed"` // distinct datagrams echoed intact
	DNSAnswered int64 `json:"dns_answered"`
	PingSent    int64 `json:"ping_sent"`
	PingReplies int64 `json:"ping_replies"`
}

// Event kinds.
const (
	EventTick    = "tick"    // Counters
	EventCorrupt = "corrupt" // a wrong byte: What and Detail say where
	EventBroken  = "broken"  // an established TCP connection ended (What: download, echo)
	EventError   = "error"   // a stream could not run at all (Detail), e.g. no raw socket
)

// Event is one line of the worker's output.
type Event struct {
	Time     int64     `json:"t"` // Unix milliseconds: host and worker share the clock
	Kind     string    `json:"kind"`
	What     string    `json:"what,omitempty"` // the stream: download, echo, conns, udp, dns, ping
	Detail   string    `json:"detail,omitempty"`
	Counters *Counters `json:"c,omitempty"`
}

// At is the event's time.
func (e Event) At() time.Time { return time.UnixMilli(e.Time) }

// Workload is where the worker sends its traffic.
type Workload struct {
	Guest netip.Addr // the appliance
	Host  netip.Addr // the namespace's address on the link: the DNS server's
	// Seed is the first download's splitmix seed; each next one adds 1.
	Seed uint64
	// DownloadSize is the length of one download (a new one starts when
	// it is done).
	DownloadSize int64
}

// Timeouts of the workload: how long a stream waits before it calls a
// connection broken. Generous: under TCG a restart can stall traffic for
// seconds, and a stall that recovers is not a break.
const (
	stallLimit   = 30 * time.Second // no byte on an established connection
	dialLimit    = 5 * time.Second  // a new connection
	tickInterval = 100 * time.Millisecond
)

// worker runs the workload and writes its events.
type worker struct {
	w   Workload
	c   struct{ downBytes, echoLines, connsOK, connsFailed, udpSent, udpEchoed, dnsAnswered, pingSent, pingReplies atomic.Int64 }
	mu  sync.Mutex // serialises out
	out *json.Encoder
}

// RunWorker runs the workload until ctx ends, writing Events to out.
func RunWorker(ctx context.Context, w Workload, out io.Writer) error {
	wk := &worker{w: w, out: json.NewEncoder(out)}
	streams := []struct {
		name string
		run  func(context.Context) error
	}{
		{"download", wk.download}, {"echo", wk.echo}, {"conns", wk.conns},
		{"udp", wk.udp}, {"dns", wk.dns}, {"ping", wk.ping},
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			if err := s.run(ctx); err != nil && ctx.Err() == nil {
				wk.emit(Event{Kind: EventError, What: s.name, Detail: err.Error()})
			}
		})
	}
	wk.ticks(ctx)
	wg.Wait()
	return nil
}

func (wk *worker) emit(e Event) {
	if e.Time == 0 {
		e.Time = time.Now().UnixMilli()
	}
	wk.mu.Lock()
	defer wk.mu.Unlock()
	wk.out.Encode(e)
}

func (wk *worker) counters() *Counters {
	return &Counters{
		DownBytes: wk.c.downBytes.Load(), EchoLines: wk.c.echoLines.Load(),
		ConnsOK: wk.c.connsOK.Load(), ConnsFailed: wk.c.connsFailed.Load(),
		UDPSent: wk.c.udpSent.Load(), UDPEchoed: wk.c.udpEchoed.Load(),
		DNSAnswered: wk.c.dnsAnswered.Load(),
		PingSent:    wk.c.pingSent.Load(), PingReplies: wk.c.pingReplies.Load(),
	}
}

// ticks writes the counters every tickInterval until ctx ends.
func (wk *worker) ticks(ctx context.Context) {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		wk.emit(Event{Kind: EventTick, Counters: wk.counters()})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// stallConn is a connection whose every Read and Write must make progress
// within stallLimit.
type stallConn struct{ net.Conn }

func (c stallConn) Read(p []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(stallLimit))
	return c.Conn.Read(p)
}

func (c stallConn) Write(p []byte) (int, error) {
	c.SetWriteDeadline(time.Now().Add(stallLimit))
	return c.Conn.Write(p)
}

func dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialLimit}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return stallConn{c}, nil
}

// download fetches /bytes again and again, each a new seed, checking every
// byte. A wrong byte ends that download (corrupt); a connection that ends
// early or stalls is broken.
func (wk *worker) download(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
	for seed := wk.w.Seed; ctx.Err() == nil; seed++ {
		url := fmt.Sprintf("http://%s/bytes?n=%d&seed=%d", wk.w.Guest, wk.w.DownloadSize, seed)
		got, err := wk.fetch(ctx, client, url, seed)
		var bad *corruption
		switch {
		case ctx.Err() != nil:
		case errors.As(err, &bad):
			wk.emit(Event{Kind: EventCorrupt, What: "download", Detail: fmt.Sprintf("%s: %v", url, err)})
		case err != nil && got > 0:
			wk.emit(Event{Kind: EventBroken, What: "download", Detail: fmt.Sprintf("%s: %v after %d bytes", url, err, got)})
			pause(ctx, 500*time.Millisecond)
		case err != nil:
			// Not connected yet: the appliance is down or restarting.
			pause(ctx, 500*time.Millisecond)
		}
	}
	return nil
}

// corruption is a wrong byte in a stream.
type corruption struct {
	off        int64
	got, wantB byte
}

func (c *corruption) Error() string {
	return fmt.Sprintf("wrong byte at offset %d: %#02x, want %#02x", c.off, c.got, c.wantB)
}

// fetch downloads url and checks it against seed's stream; it returns how
// many correct bytes came.
func (wk *worker) fetch(ctx context.Context, client *http.Client, url string, seed uint64) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	want := splitmix.New(seed)
	buf, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	for n < wk.w.DownloadSize {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			want.Read(exp[:k])
			if i := firstDiff(buf[:k], exp[:k]); i >= 0 {
				return n, &corruption{off: n + int64(i), got: buf[i], wantB: exp[i]}
			}
			n += int64(k)
			wk.c.downBytes.Add(int64(k))
		}
		if err == io.EOF && n == wk.w.DownloadSize {
			break
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

// firstDiff is the index of the first byte where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// echoLine is line n of a stream named tag: numbered, with a payload that
// changes with n, so that a byte out of place shows.
func echoLine(tag string, n int64) string {
	state := uint64(n)
	return fmt.Sprintf("%s %d %016x %016x\n", tag, n, splitmix.Next(&state), splitmix.Next(&state))
}

// echo keeps one TCP connection to the echo app all along, a numbered line
// every 100 ms, reconnecting (and saying it broke) when it ends.
func (wk *worker) echo(ctx context.Context) error {
	addr := netip.AddrPortFrom(wk.w.Guest, 7).String()
	var n int64
	for ctx.Err() == nil {
		c, err := dial(ctx, "tcp", addr)
		if err != nil {
			pause(ctx, 500*time.Millisecond)
			continue
		}
		lines, err := wk.session(ctx, c, &n)
		c.Close()
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errWrongLine):
			wk.emit(Event{Kind: EventCorrupt, What: "echo", Detail: err.Error()})
		default:
			wk.emit(Event{Kind: EventBroken, What: "echo", Detail: fmt.Sprintf("%v after %d lines", err, lines)})
			pause(ctx, 500*time.Millisecond)
		}
	}
	return nil
}

var errWrongLine = errors.New("echoed line differs from the one sent")

// session exchanges numbered lines on c until it fails; n is the number of
// the next line, kept across sessions.
func (wk *worker) session(ctx context.Context, c net.Conn, n *int64) (int, error) {
	r := bufio.NewReader(c)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for lines := 0; ; lines++ {
		line := echoLine("echo", *n)
		if _, err := io.WriteString(c, line); err != nil {
			return lines, err
		}
		got, err := r.ReadString('\n')
		if err != nil {
			return lines, err
		}
		if got != line {
			return lines, fmt.Errorf("%w: line %d came back as %q", errWrongLine, *n, clipText(got))
		}
		*n++
		wk.c.echoLines.Add(1)
		select {
		case <-ctx.Done():
			return lines, ctx.Err()
		case <-t.C:
		}
	}
}

func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// conns opens a new connection to the echo app every second and exchanges
// one line on it: the appliance takes new connections.
func (wk *worker) conns(ctx context.Context) error {
	addr := netip.AddrPortFrom(wk.w.Guest, 7).String()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := int64(0); ctx.Err() == nil; n++ {
		err := wk.oneConn(ctx, addr, n)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errWrongLine):
			wk.c.connsFailed.Add(1)
			wk.emit(Event{Kind: EventCorrupt, What: "conns", Detail: err.Error()})
		case err != nil:
			wk.c.connsFailed.Add(1)
		default:
			wk.c.connsOK.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return nil
}

func (wk *worker) oneConn(ctx context.Context, addr string, n int64) error {
	ctx, cancel := context.WithTimeout(ctx, 2*dialLimit)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * dialLimit))
	line := echoLine("conn", n)
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line {
		return fmt.Errorf("%w: connection %d's line came back as %q", errWrongLine, n, clipText(got))
	}
	return nil
}

// udp sends a numbered datagram to the echo app every 50 ms on one socket
// and counts the distinct ones echoed intact.
func (wk *worker) udp(ctx context.Context) error {
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { c.Close() })
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(wk.w.Guest, 7))
	var wg sync.WaitGroup
	wg.Go(func() { wk.udpReceive(c) })
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n := int64(0); ctx.Err() == nil; n++ {
		c.WriteToUDP([]byte(echoLine("udp", n)), to) // a send refused (no ARP yet) is a datagram lost
		wk.c.udpSent.Add(1)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	wg.Wait()
	return nil
}

func (wk *worker) udpReceive(c *net.UDPConn) {
	seen := map[int64]bool{}
	buf := make([]byte, 2048)
	for {
		k, err := c.Read(buf)
		if err != nil {
			return
		}
		got := string(buf[:k])
		var n int64
		if f := strings.Fields(got); len(f) >= 2 {
			n, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if got != echoLine("udp", n) {
			wk.emit(Event{Kind: EventCorrupt, What: "udp", Detail: fmt.Sprintf("datagram %q is none that was sent", clipText(got))})
			continue
		}
		if !seen[n] { // a resent request may echo twice
			seen[n] = true
			wk.c.udpEchoed.Add(1)
		}
		delete(seen, n-10000)
	}
}

// dnsAnswer is the address the worker's DNS server gives every A query.
var dnsAnswer = [4]byte{10, 77, 0, 99}

// dns answers the appliance's resolver on the namespace's address, port 53.
func (wk *worker) dns(ctx context.Context) error {
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(wk.w.Host, 53)))
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { c.Close() })
	buf := make([]byte, 1500)
	for {
		k, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return nil
		}
		if reply, ok := answerDNS(buf[:k]); ok {
			if _, err := c.WriteToUDP(reply, from); err == nil {
				wk.c.dnsAnswered.Add(1)
			}
		}
	}
}

// answerDNS answers a query for an A record with dnsAnswer.
func answerDNS(query []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, false
	}
	q, err := p.Question()
	if err != nil || q.Type != dnsmessage.TypeA {
		return nil, false
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired})
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1}, dnsmessage.AResource{A: dnsAnswer})
	reply, err := b.Finish()
	return reply, err == nil
}

// ping sends an ICMP echo request every 200 ms and counts the replies.
func (wk *worker) ping(ctx context.Context) error {
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return fmt.Errorf("ping needs a raw socket (root): %w", err)
	}
	context.AfterFunc(ctx, func() { c.Close() })
	id := os.Getpid() & 0xffff
	var wg sync.WaitGroup
	wg.Go(func() { wk.pingReceive(c, id) })
	to := &net.IPAddr{IP: wk.w.Guest.AsSlice()}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for seq := 0; ctx.Err() == nil; seq++ {
		m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq & 0xffff, Data: []byte("keepnet campaign")}}
		if b, err := m.Marshal(nil); err == nil {
			c.WriteTo(b, to)
			wk.c.pingSent.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	wg.Wait()
	return nil
}

func (wk *worker) pingReceive(c *icmp.PacketConn, id int) {
	buf := make([]byte, 1500)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		m, err := icmp.ParseMessage(1, buf[:k])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && from.String() == wk.w.Guest.String() {
			wk.c.pingReplies.Add(1)
		}
	}
}
