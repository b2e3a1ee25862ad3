package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// A Connector yields the next QEMU connection, blocking until there is one
// or ctx is done.
type Connector func(ctx context.Context) (net.Conn, error)

// Listen creates the Unix socket QEMU connects to with
// -netdev stream,server=off. A socket file left by a relay that is gone is
// replaced; one a live process answers on is an error, as is a path that is
// not a socket. The file is removed when the listener closes.
func Listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; choose another -qemu path", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use by a running process (another relay?)", path)
		}
		os.Remove(path) // stale
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Accepting is the Connector for a Listen socket: each QEMU that connects,
// one after another.
func Accepting(ln *net.UnixListener) Connector {
	return func(ctx context.Context) (net.Conn, error) {
		stop := context.AfterFunc(ctx, func() { ln.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		c, err := ln.Accept()
		if ctx.Err() != nil {
			if c != nil {
				c.Close()
			}
			return nil, ctx.Err()
		}
		return c, err
	}
}

// Dialing is the Connector for a QEMU that listens itself
// (-netdev stream,server=on): it connects to path, retrying every retry
// until QEMU is there. QEMU 7.2 listens again after a client leaves, so a
// restarted relay reconnects to a running guest.
func Dialing(path string, retry time.Duration) Connector {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, "unix", path)
			if err == nil {
				return c, nil
			}
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
	}
}

// Serve runs the relay for each connection next yields, until ctx is done
// (nil) or next fails. A connection ending badly (a peer breaking the
// framing) is logged and the next one served.
func (r *Relay) Serve(ctx context.Context, next Connector) error {
	for {
		conn, err := next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		r.cfg.Logf("QEMU connected")
		err = r.Run(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.cfg.Logf("QEMU connection ended: %v", err)
		} else {
			r.cfg.Logf("QEMU disconnected")
		}
		if errors.Is(err, errFatal) {
			return err
		}
	}
}

// errFatal marks errors after which serving another connection cannot help
// (the tap is gone).
var errFatal = errors.New("tap failed")
