package socket

import (
	"context"
	"net"
	"net/netip"
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
		switch {
		case q.Name.String() != "example.test.":
			resp.Header.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}},
			}}
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
