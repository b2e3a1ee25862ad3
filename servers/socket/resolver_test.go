package socket

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// serveDNS answers A questions for example.test with 192.0.2.7, AAAA with
// nothing, anything else with NXDOMAIN, until pc is closed.
func serveDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		resp := dnsmessage.Message{
			Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
			Questions: []dnsmessage.Question{q},
		}
		a := func(ip netip.Addr) dnsmessage.Resource {
			return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.AResource{A: ip.As4()}}
		}
		aaaa := func(ip netip.Addr) dnsmessage.Resource {
			return dnsmessage.Resource{Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET, TTL: 60},
				Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}}
		}
		switch name := q.Name.String(); {
		case name == "example.test." && q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{a(netip.MustParseAddr("192.0.2.7"))}
		case name == "v6only.test." && q.Type == dnsmessage.TypeAAAA:
			resp.Answers = []dnsmessage.Resource{aaaa(hostIP6)}
		case name == "dual.test." && q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{a(netip.MustParseAddr("10.0.0.9"))} // not the fake's host
		case name == "dual.test." && q.Type == dnsmessage.TypeAAAA:
			resp.Answers = []dnsmessage.Resource{aaaa(hostIP6)}
		case name != "example.test." && name != "v6only.test." && name != "dual.test.":
			resp.Header.RCode = dnsmessage.RCodeNameError
		}
		out, err := resp.Pack()
		if err != nil {
			continue
		}
		pc.WriteTo(out, from)
	}
}

func TestResolver(t *testing.T) {
	n := newFakeNet()
	ap, dnsApp := newApp(t, n), newApp(t, n)
	go serveDNS(listen(t, dnsApp.st, ":53"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := ap.st.ResolverVia("10.0.0.2:53")
	got, err := r.LookupNetIP(ctx, "ip4", "example.test")
	if err != nil {
		t.Fatalf("LookupNetIP(example.test) = %v", err)
	}
	if want := netip.MustParseAddr("192.0.2.7"); len(got) != 1 || got[0] != want {
		t.Errorf("LookupNetIP(example.test) = %v, want [%v]", got, want)
	}
	if _, err := r.LookupNetIP(ctx, "ip4", "nowhere.test"); err == nil {
		t.Error("LookupNetIP(nowhere.test) succeeded, want NXDOMAIN")
	}
	// Every query's socket was closed again.
	waitFor(t, "the resolver's sockets closed", func() bool { return ap.st.Stats().Sockets == 0 })
}

// Dial takes a name: a name with an AAAA record only connects over IPv6
// ("tcp" asks both kinds); one whose A record leads nowhere falls back to
// its AAAA (whichever the resolver's order tries first); "tcp4" asks A
// only, and fails with the unreachable address's error; a name that does
// not exist fails as Go's does.
func TestDialName(t *testing.T) {
	n := newFakeNet()
	ap, srv, dnsApp := newApp(t, n), newApp(t, n), newApp(t, n)
	go serveDNS(listen(t, dnsApp.st, ":53"))
	ap.st.names = ap.st.ResolverVia("10.0.0.2:53")
	l, err := srv.st.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	for _, name := range []string{"v6only.test:80", "dual.test:80"} {
		c, err := ap.st.Dial("tcp", name)
		if err != nil {
			t.Errorf("Dial(tcp, %s) = %v", name, err)
			continue
		}
		if got := c.RemoteAddr().String(); got != "[2001:db8::2]:80" {
			t.Errorf("Dial(tcp, %s) connected to %s, want [2001:db8::2]:80", name, got)
		}
		b := make([]byte, 2)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
			t.Errorf("read %q, %v over the connection to %s", b, err, name)
		}
		c.Close()
	}
	if _, err := ap.st.Dial("tcp4", "dual.test:80"); !errors.Is(err, syscall.ENETUNREACH) {
		t.Errorf("Dial(tcp4, dual.test:80) = %v, want ENETUNREACH (its A record only)", err)
	}
	var dnsErr *net.DNSError
	if _, err := ap.st.Dial("tcp", "nowhere.test:80"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("Dial(tcp, nowhere.test:80) = %v, want a not-found *net.DNSError", err)
	}
	waitFor(t, "the client's sockets closed", func() bool { return ap.st.Stats().Sockets == 0 })
}
