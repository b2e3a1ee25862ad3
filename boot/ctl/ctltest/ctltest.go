// Package ctltest serves the control channel's protocol on a Unix socket in
// tests, the way a booted appliance's init answers the host.
package ctltest

import (
	"net"
	"testing"

	"keepnet/boot/ctl"
)

// Serve listens on the Unix socket path and answers every connection with
// ctl.Serve(h) until the test ends. A handler that embeds ctl.Handler
// (nil) need only define the methods its test calls. A socket that cannot
// be made fails the test (t.Error: Serve may run on any goroutine).
func Serve(t testing.TB, path string, h ctl.Handler) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Error(err)
		return
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				ctl.Serve(c, c, h)
			}()
		}
	}()
}
