// Package echo is the Echo Protocol (RFC 862) over TCP and UDP, served on
// port 7 of the appliance: the simplest check that a byte stream or a
// datagram makes it through the stack and back unchanged.
//
// The servers take their sockets from outside (see package netapi) so they
// run unchanged on the Linux stack and on keepnet's socket API.
//
// Recovery: echo keeps no state beyond its counters. If it crashes the
// supervisor restarts it; open TCP connections are lost and clients
// reconnect; a UDP datagram in flight may go unanswered.
package echo

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a Server's zero fields.
const (
	DefaultMaxConns    = 8192 // as many as keepnet's tcp holds (tcp.DefaultMaxConns)
	DefaultIdleTimeout = 5 * time.Minute
)

// Stats counts what a Server has echoed, for status reporting. Every field
// is updated atomically and may be read at any time.
type Stats struct {
	TCPAccepted atomic.Int64 // connections accepted
	TCPActive   atomic.Int64 // connections open now
	TCPBytes    atomic.Int64 // bytes echoed over TCP
	UDPPackets  atomic.Int64 // datagrams echoed
	UDPBytes    atomic.Int64 // bytes echoed over UDP
	UDPDropped  atomic.Int64 // datagrams whose echo could not be sent
	// TCPFailed counts connections that ended with an error of the
	// connection (a reset, keep-alive giving up: ETIMEDOUT), not an end
	// of stream, the idle timeout or the server stopping.
	TCPFailed atomic.Int64
}

// Server is an echo server. Its zero value is ready to use with the
// defaults; one Server may serve several listeners at once.
type Server struct {
	Stats Stats
	// MaxConns bounds concurrent TCP connections per listener; further
	// connections wait in the listen backlog. 0 means DefaultMaxConns.
	MaxConns int
	// IdleTimeout closes a TCP connection that neither reads nor writes
	// for that long. 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// KeepAlive, with Enable set, is set on every TCP connection accepted
	// (SetKeepAliveConfig, where the connection has it): a peer that
	// vanishes is noticed after Idle + Count*Interval of silence.
	KeepAlive net.KeepAliveConfig
	// Logf, if set, reports echoes that could not be sent: the first, then
	// every hundredth, with the error; and the connections that failed
	// (Stats.TCPFailed: the first ten, then every hundredth), with the
	// error and how long after their last bytes.
	Logf func(format string, args ...any)
}

// DefaultServer is the Server of the package-level functions.
var DefaultServer = &Server{}

// ServeTCP serves TCP echo on l with DefaultServer.
func ServeTCP(ctx context.Context, l net.Listener) error {
	return DefaultServer.ServeTCP(ctx, l)
}

// ServeUDP serves UDP echo on pc with DefaultServer.
func ServeUDP(ctx context.Context, pc net.PacketConn) error {
	return DefaultServer.ServeUDP(ctx, pc)
}

// tcpBufSize is each TCP connection's copy buffer.
const tcpBufSize = 32 << 10

// tcpFirstBufSize is a connection's buffer until a read fills it: an idle
// connection costs little.
const tcpFirstBufSize = 2 << 10

// ServeTCP accepts connections on l and echoes each one until the client
// closes its side, then closes. When ctx is done it closes l and every open
// connection, waits for their goroutines and returns nil. Otherwise it
// returns l's first permanent error, also after closing everything.
func (s *Server) ServeTCP(ctx context.Context, l net.Listener) error {
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	// On return, whatever the reason, cancel closes every connection and
	// then wg.Wait waits for their goroutines (defers run last first).
	var wg sync.WaitGroup
	defer wg.Wait()
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	slots := make(chan struct{}, maxConns)
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if isTemporary(err) {
				// Out of file descriptors and the like: wait for
				// connections to close, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return err
		}
		backoff = 0
		wg.Go(func() {
			defer func() { <-slots }()
			s.echoConn(connCtx, c)
		})
	}
}

// isTemporary reports whether an accept error may go away by itself. The
// Temporary method is deprecated for reads and writes but still the signal
// for accept, as net/http uses it.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// echoConn copies c back to itself until EOF, then closes the write side
// (if c can) so the client sees EOF only after all its data, and closes c.
func (s *Server) echoConn(ctx context.Context, c net.Conn) {
	s.Stats.TCPAccepted.Add(1)
	s.Stats.TCPActive.Add(1)
	defer s.Stats.TCPActive.Add(-1)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	if s.KeepAlive.Enable {
		if ka, ok := c.(interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}); ok {
			if err := ka.SetKeepAliveConfig(s.KeepAlive); err != nil && s.Logf != nil {
				s.Logf("tcp %v: keep-alive: %v", c.RemoteAddr(), err)
			}
		}
	}
	buf := make([]byte, tcpFirstBufSize)
	last := time.Now() // bytes last came
	for {
		c.SetDeadline(time.Now().Add(idle))
		n, err := c.Read(buf)
		if n > 0 {
			last = time.Now()
			if _, werr := c.Write(buf[:n]); werr != nil {
				s.failed(ctx, c, werr, last)
				return
			}
			s.Stats.TCPBytes.Add(int64(n))
		}
		if n == len(buf) && n < tcpBufSize {
			buf = make([]byte, tcpBufSize) // the peer sends in bulk
		}
		if err == io.EOF {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			return
		}
		if err != nil {
			s.failed(ctx, c, err, last)
			return
		}
	}
}

// failed counts and reports a connection that ended with err, unless the
// server is stopping (it closed the connection) or err is the idle
// timeout.
func (s *Server) failed(ctx context.Context, c net.Conn, err error, last time.Time) {
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return
	}
	if f := s.Stats.TCPFailed.Add(1); s.Logf != nil && (f <= 10 || f%100 == 0) {
		s.Logf("tcp %v: connection failed %v after its last bytes (%d so far): %v", c.RemoteAddr(), time.Since(last).Round(10*time.Millisecond), f, err)
	}
}

// maxDatagram is the largest UDP payload there can be.
const maxDatagram = 65535

// ServeUDP echoes each datagram arriving on pc to its sender. When ctx is
// done it closes pc and returns nil; otherwise it returns pc's first read
// error, after closing pc. A failed send drops that one echo (counted in
// Stats.UDPDropped) and serving goes on.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer pc.Close()
	buf := make([]byte, maxDatagram)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if _, err := pc.WriteTo(buf[:n], addr); err != nil {
			if d := s.Stats.UDPDropped.Add(1); s.Logf != nil && (d == 1 || d%100 == 0) {
				s.Logf("udp: the echo to %v dropped (%d so far): %v", addr, d, err)
			}
			continue
		}
		s.Stats.UDPPackets.Add(1)
		s.Stats.UDPBytes.Add(int64(n))
	}
}
