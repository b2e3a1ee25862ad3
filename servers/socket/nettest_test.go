// golang.org/x/net/nettest's conformance tests, for the UDP side.

package socket

import (
	"context"
	"flag"
	"net"
	"os"
	"strconv"
	"testing"

	"golang.org/x/net/nettest"
)

// TestMain skips the three subtests that need a reliable stream: BasicIO
// and PingPong end when a Read returns io.EOF after the peer's Close, which
// a datagram socket never does (Go's own *net.UDPConn hangs in them too);
// FutureTimeout writes until its deadline, faster than the peer reads, and
// then waits for one particular byte to come back, which a datagram socket
// may have dropped with the overflow.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() == "" {
		f.Value.Set("TestNettestConn/(BasicIO|PingPong|FutureTimeout)$")
	}
	os.Exit(m.Run())
}

func TestNettestConn(t *testing.T) {
	n := newFakeNet()
	ap := newApp(t, n)
	port := 40000
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		port += 2
		a := net.JoinHostPort("10.0.0.2", strconv.Itoa(port))
		b := net.JoinHostPort("10.0.0.2", strconv.Itoa(port+1))
		u1, err := ap.st.DialUDPFrom(context.Background(), "udp", a, b)
		if err != nil {
			return nil, nil, nil, err
		}
		u2, err := ap.st.DialUDPFrom(context.Background(), "udp", b, a)
		if err != nil {
			u1.Close()
			return nil, nil, nil, err
		}
		return u1, u2, func() { u1.Close(); u2.Close() }, nil
	})
}
