package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdlayher/vsock"

	"keepnet/boot/ctl"
)

// LocalCtl is the Unix socket where init answers the control protocol for
// components inside the guest (the HTTP status page asks it).
const LocalCtl = "/run/keepnet/ctl.sock"

// serveLocal answers the control protocol on a Unix socket, one goroutine per
// client, until ctx ends.
func serveLocal(ctx context.Context, path string, h ctl.Handler, logf func(string, ...any)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	// Every component may ask; h answers only what anyone may know.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return err
	}
	go serveListener(ctx, l, h, logf)
	return nil
}

func serveListener(ctx context.Context, l net.Listener, h ctl.Handler, logf func(string, ...any)) {
	context.AfterFunc(ctx, func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				logf("control channel %v: %v", l.Addr(), err)
			}
			return
		}
		go func() {
			defer c.Close()
			ctl.Serve(c, c, h)
		}()
	}
}

// serveVsock answers the control protocol on vsock port ctl.VsockPort, to
// the host alone.
func serveVsock(ctx context.Context, h ctl.Handler, logf func(string, ...any)) error {
	l, err := vsock.Listen(ctl.VsockPort, nil)
	if err != nil {
		return fmt.Errorf("control channel on vsock port %d: %w", ctl.VsockPort, err)
	}
	go serveListener(ctx, hostOnly{l, logf}, h, logf)
	return nil
}

// hostOnly accepts only connections from the host's vsock address
// (VMADDR_CID_HOST, 2): another guest or a local process reaching the
// port is closed at once.
type hostOnly struct {
	net.Listener
	logf func(string, ...any)
}

func (l hostOnly) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if fromHost(c.RemoteAddr()) {
			return c, nil
		}
		l.logf("control channel: refused %v, not the host", c.RemoteAddr())
		c.Close()
	}
}

// fromHost tells whether a is the host's vsock address.
func fromHost(a net.Addr) bool {
	va, ok := a.(*vsock.Addr)
	return ok && va.ContextID == vsock.Host
}

// findVirtioPort returns the /dev node of the virtio-serial port with the
// given name, waiting (bounded) for the driver to create it.
func findVirtioPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ports, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range ports {
			b, err := os.ReadFile(p)
			if err == nil && strings.TrimSpace(string(b)) == name {
				dev := "/dev/" + filepath.Base(filepath.Dir(p))
				if _, err := os.Stat(dev); err == nil {
					return dev, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no virtio-serial port named %s within %v", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveVirtioPort answers the control protocol on a virtio-serial port for
// the guest's whole life. The port is one byte stream shared by successive
// host clients. While no client is connected on the host side, reads return
// EOF at once (virtio_console reports "nobody there" that way), so the loop
// polls gently; writes block until a client connects, which is why responses
// carry the request id.
func serveVirtioPort(ctx context.Context, dev string, h ctl.Handler, logf func(string, ...any)) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		logf("control channel: %v", err)
		return
	}
	defer f.Close()
	r := &retryEOF{r: f, ctx: ctx, pause: 20 * time.Millisecond}
	if err := ctl.Serve(r, f, h); err != nil && ctx.Err() == nil {
		logf("control channel %s: %v", dev, err)
	}
}

// retryEOF turns the EOFs of a disconnected virtio-serial port into waiting:
// pause after the first EOF, growing to maxPause while no client comes
// (each look wakes init, dear under TCG), pause again once one has
// written.
type retryEOF struct {
	r     io.Reader
	ctx   context.Context
	pause time.Duration
	wait  time.Duration // the next wait; zero: pause
}

// maxPause bounds retryEOF's wait, and so how long a new client's first
// request may go unread.
const maxPause = 100 * time.Millisecond

func (e *retryEOF) Read(p []byte) (int, error) {
	for {
		n, err := e.r.Read(p)
		if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			e.wait = 0
			return n, err
		}
		if e.wait == 0 {
			e.wait = e.pause
		}
		t := time.NewTimer(e.wait)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return 0, io.EOF
		case <-t.C:
		}
		e.wait = min(2*e.wait, max(maxPause, e.pause))
	}
}
