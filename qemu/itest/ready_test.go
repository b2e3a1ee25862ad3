package itest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/apps/splitmix"
	"keepnet/servers/header"
)

// TestReadyMeansServing boots each stack with `keepnet up --detach` and, the
// moment it returns, asks the appliance everything a user would: one ARP
// request (sent once, never repeated: the kernel's own resolution retries
// every second and a TCP SYN is retransmitted after one, which would hide a
// stack that does not answer yet), a TCP connection and an HTTP GET on port
// 80, and a UDP echo on port 7. No retry loop, no sleep: ready means serving.
//
// KEEPNET_READY_BOOTS (default 1) boots each stack that many times, for the
// acceptance run with both host CPUs busy.
func TestReadyMeansServing(t *testing.T) {
	requireITest(t, true)
	boots := 1
	if s := os.Getenv("KEEPNET_READY_BOOTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KEEPNET_READY_BOOTS=%q: want a positive number", s)
		}
		boots = n
	}
	for _, stack := range []string{"keepnet", "linux"} {
		t.Run(stack, func(t *testing.T) {
			failed := 0
			for i := range boots {
				ok := t.Run(strconv.Itoa(i+1), func(t *testing.T) { readyBoot(t, stack) })
				if !ok {
					failed++
				}
			}
			t.Logf("%s stack: %d of %d boots served at once", stack, boots-failed, boots)
		})
	}
}

// readyBoot is one boot and the probes that follow it at once.
func readyBoot(t *testing.T, stack string) {
	n := newNetns(t)
	// A later --timeout overrides boot's 120s: a boot with both host CPUs
	// busy may take minutes, and that is not what this tests. It stays
	// below boot's 3-minute bound, so that keepnet up fails by itself (and
	// stops its QEMU) rather than be killed.
	a := boot(t, n.Name, append(n.upArgs(), "--stack", stack, "--timeout", "170s")...)
	returned := time.Now()
	var p probes
	inNetns(t, n.Name, func() { p = probe(n) })
	t.Logf("boot to ready %v; after up returned: ARP reply %v, HTTP reply %v (SYN retransmissions %d), UDP echo %v",
		a.ready, p.arp.Sub(returned).Round(time.Millisecond), p.http.Sub(returned).Round(time.Millisecond),
		p.synRetrans, p.udp.Sub(returned).Round(time.Millisecond))
	for _, err := range p.errs {
		t.Error(err)
	}

	st := a.status()
	if !st.Ready || len(st.Waiting) > 0 {
		t.Errorf("status: ready %v, waiting %q; want ready, waiting for nothing", st.Ready, st.Waiting)
	}
	for _, c := range st.Components {
		if !c.Ready {
			t.Errorf("component %s = %+v, want ready", c.Name, c)
		}
	}
	// Both lines are on the console. Their order is not asserted: httpd
	// logs before it announces, but its output and its readiness pipe are
	// two pipes the supervisor reads side by side.
	console, _ := os.ReadFile(a.console)
	for _, line := range []string{"httpd: serving on", "init: keepnet ready"} {
		if !bytes.Contains(console, []byte(line)) {
			t.Errorf("console has no %q", line)
		}
	}
}

// probes are when each probe was answered, and what failed.
type probes struct {
	arp, http, udp time.Time
	// synRetrans is how often the SYN was sent again: logged, not
	// asserted, since a busy host may take longer than the first RTO.
	synRetrans uint32
	errs       []error
}

// probe asks the appliance once each: ARP, TCP and HTTP on port 80, UDP echo
// on port 7. It runs inside the namespace (inNetns). The deadlines are
// generous, only to catch a hang; nothing is retried.
func probe(n *netns) probes {
	var p probes
	fail := func(format string, args ...any) { p.errs = append(p.errs, fmt.Errorf(format, args...)) }
	guest := netip.MustParseAddr(n.GuestIP)

	arpReply, err := sendARPRequest(n, guest)
	if err != nil {
		fail("ARP request: %v", err)
	}

	c, err := net.DialTimeout("tcp", net.JoinHostPort(n.GuestIP, "80"), 20*time.Second)
	if err != nil {
		fail("TCP connect to port 80 at once: %v", err)
	} else {
		p.synRetrans = totalRetrans(c)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		// /bytes, not the status page: that one asks init, and says 503
		// when init is slow to answer, which is not what this tests.
		fmt.Fprintf(c, "GET /bytes?n=4096&seed=7 HTTP/1.0\r\nHost: %s\r\n\r\n", n.GuestIP)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			fail("HTTP GET /bytes at once: %v", err)
		} else {
			body, err := io.ReadAll(resp.Body)
			want, _ := io.ReadAll(io.LimitReader(splitmix.New(7), 4096))
			if resp.StatusCode != http.StatusOK || err != nil || !bytes.Equal(body, want) {
				fail("HTTP GET /bytes?n=4096&seed=7 at once: %s, %d bytes (%v), want 200 with splitmix(7)'s 4096 bytes", resp.Status, len(body), err)
			}
		}
		p.http = time.Now()
		c.Close()
	}

	u, err := net.Dial("udp", net.JoinHostPort(n.GuestIP, "7"))
	if err != nil {
		fail("UDP socket: %v", err)
	} else {
		msg := []byte("ready means serving")
		u.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 100)
		if _, err := u.Write(msg); err != nil {
			fail("UDP echo: send: %v", err)
		} else if k, err := u.Read(buf); err != nil || !bytes.Equal(buf[:k], msg) {
			fail("UDP echo on port 7 at once: got %q, %v; want %q", buf[:k], err, msg)
		}
		p.udp = time.Now()
		u.Close()
	}

	if arpReply != nil {
		r := <-arpReply
		if r.err != nil {
			fail("one ARP request, sent the moment up returned: %v", r.err)
		}
		p.arp = r.at
	}
	return p
}

// totalRetrans is the kernel's count of segments c retransmitted so far
// (TCP_INFO), or 0 if it cannot be read.
func totalRetrans(c net.Conn) uint32 {
	sc, ok := c.(*net.TCPConn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var n uint32
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			n = info.Total_retrans
		}
	})
	return n
}

// arpResult is when the ARP reply came, or why none did.
type arpResult struct {
	at  time.Time
	err error
}

// sendARPRequest sends one ARP request for ip on the namespace's tap device
// and returns a channel that gets the reply's arrival, or an error after 10s.
// The request is never repeated.
func sendARPRequest(n *netns, ip netip.Addr) (<-chan arpResult, error) {
	ifi, err := net.InterfaceByName(n.Tap)
	if err != nil {
		return nil, err
	}
	proto := int(htons(uint16(header.EtherTypeARP)))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	var us header.MAC
	copy(us[:], ifi.HardwareAddr)
	f := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(f).Encode(&header.EthernetFields{Dst: header.BroadcastMAC, Src: us, Type: header.EtherTypeARP})
	header.ARP(f[header.EthernetMinimumSize:]).Encode(&header.ARPFields{
		Op: header.ARPRequest, SenderMAC: us, SenderIP: netip.MustParseAddr(n.HostIP), TargetIP: ip})
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], header.BroadcastMAC[:])
	if err := unix.Sendto(fd, f, 0, to); err != nil {
		unix.Close(fd)
		return nil, err
	}
	done := make(chan arpResult, 1)
	go func() {
		defer unix.Close(fd)
		deadline := time.Now().Add(10 * time.Second)
		buf := make([]byte, 1600)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				done <- arpResult{err: fmt.Errorf("no ARP reply from %v within 10s", ip)}
				return
			}
			tv := unix.NsecToTimeval(left.Nanoseconds())
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				done <- arpResult{err: err}
				return
			}
			if k < header.EthernetMinimumSize+header.ARPSize {
				continue
			}
			arp := header.ARP(buf[header.EthernetMinimumSize:k])
			if arp.Op() == header.ARPReply && arp.SenderIP() == ip {
				done <- arpResult{at: time.Now()}
				return
			}
		}
	}()
	return done, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// inNetns runs f on a thread that has entered the named network namespace,
// so that the sockets f opens live there. The thread is never reused: it
// ends with f's goroutine, still locked.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		ns, err := os.Open("/var/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering namespace %s: %w", name, err)
			return
		}
		f()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
