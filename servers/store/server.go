package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxConns bounds the connections served at once; the accept loop waits for
// a free slot beyond it. One client per component needs far fewer.
const MaxConns = 256

// ioTimeout bounds reading the rest of a frame once its length has arrived,
// and writing a reply, so a stalled peer cannot hold a connection slot forever.
const ioTimeout = 10 * time.Second

// IdleTimeout is how long a connection may go without a request before
// the server closes it.
const IdleTimeout = time.Minute

// Server holds the pairs of every namespace in memory.
type Server struct {
	epoch    uint64
	maxBytes int64
	access   *Access       // nil: anyone may do anything
	idle     time.Duration // IdleTimeout unless an option says otherwise

	mu    sync.Mutex                   // guards data, used and usage
	data  map[string]map[string][]byte // namespace -> key -> value; values are never modified in place
	used  int64                        // sum of entryCost over data
	usage map[string]usage             // by Access.owner; only with access
}

// ServerOption configures NewServer.
type ServerOption func(*Server)

// WithAccess makes the server enforce a (see Access).
func WithAccess(a Access) ServerOption { return func(s *Server) { s.access = &a } }

// WithIdleTimeout closes connections idle for d instead of IdleTimeout.
func WithIdleTimeout(d time.Duration) ServerOption { return func(s *Server) { s.idle = d } }

// NewServer returns an empty store with a fresh random epoch.
func NewServer(opts ...ServerOption) *Server {
	return newServer(randomEpoch(), MaxBytes, opts...)
}

func newServer(epoch uint64, maxBytes int64, opts ...ServerOption) *Server {
	s := &Server{epoch: epoch, maxBytes: maxBytes, idle: IdleTimeout,
		data: make(map[string]map[string][]byte), usage: make(map[string]usage)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// randomEpoch returns a random non-zero id; zero means "no store seen" to a client.
func randomEpoch() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:]) // never returns an error (crypto/rand, Go ≥ 1.24)
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// Epoch returns the id of this store instance, carried in every reply.
func (s *Server) Epoch() uint64 { return s.epoch }

// Serve serves a fresh store on l until ctx is done.
func Serve(ctx context.Context, l net.Listener) error {
	return NewServer().Serve(ctx, l)
}

// Serve accepts connections on l and answers their requests until ctx is
// done; then it closes l and every connection, waits for their goroutines
// and returns nil. It returns an accept error other than a temporary one
// (the store keeps its data; Serve may be called again on a new listener).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns = make(map[net.Conn]struct{})
		slots = make(chan struct{}, MaxConns)
	)
	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer func() {
		stop()
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()

	var delay time.Duration // back-off after temporary accept errors (EMFILE...)
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
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			return err
		}
		delay = 0
		mu.Lock()
		if ctx.Err() != nil { // the AfterFunc already closed the others
			mu.Unlock()
			c.Close()
			<-slots
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			var who caller
			if s.access != nil {
				who = s.access.identify(c)
			}
			s.serveConn(c, who)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

// isTemporary reports accept errors worth retrying: out of descriptors or buffers.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn answers c's requests, from who, one by one until c fails, is
// idle too long or sends a frame too large to be any request.
func (s *Server) serveConn(c net.Conn, who caller) {
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		if _, err := r.Peek(lenSize); err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		body, err := readFrame(r, maxRequestBody)
		if err != nil {
			return
		}
		rep := s.handle(body, who)
		c.SetWriteDeadline(time.Now().Add(ioTimeout))
		bufs := net.Buffers{replyHeader(&rep), rep.payload}
		if _, err := bufs.WriteTo(c); err != nil {
			return
		}
	}
}

// handle decodes and executes one request body from who.
func (s *Server) handle(body []byte, who caller) reply {
	req, err := decodeRequest(body)
	rep := reply{id: req.id, epoch: s.epoch}
	if err != nil {
		return s.fail(rep, err)
	}
	if s.access != nil {
		if err := s.access.check(who, &req); err != nil {
			return s.fail(rep, err)
		}
	}
	switch req.op {
	case opHello:
	case opPut:
		if err := s.put(req.ns, req.key, req.value, who); err != nil {
			return s.fail(rep, err)
		}
	case opGet:
		v, ok := s.get(req.ns, req.key)
		if !ok {
			rep.status = statusNotFound
		}
		rep.payload = v
	case opDelete:
		s.delete(req.ns, req.key)
	case opList:
		rep.payload = appendList(nil, s.list(req.ns))
	}
	return rep
}

func (s *Server) fail(rep reply, err error) reply {
	rep.status = errStatus(err)
	msg := err.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	rep.payload = []byte(msg)
	return rep
}

func (s *Server) put(ns, key string, value []byte, who caller) error {
	cost := entryCost(ns, key, value)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[ns]
	var oldCost int64
	newKeys := 1
	if old, ok := m[key]; ok {
		oldCost = entryCost(ns, key, old)
		newKeys = 0
	}
	if used := s.used - oldCost + cost; used > s.maxBytes {
		return fmt.Errorf("%w: %d of %d bytes used, the pair needs %d", ErrFull, s.used, s.maxBytes, cost)
	}
	if s.access != nil {
		owner := s.access.owner(ns, key)
		u := s.usage[owner]
		if !who.root() {
			if err := s.access.overQuota(owner, u, cost-oldCost, newKeys); err != nil {
				return err
			}
		}
		s.usage[owner] = usage{u.bytes + cost - oldCost, u.keys + newKeys}
	}
	if m == nil {
		m = make(map[string][]byte)
		s.data[ns] = m
	}
	m[key] = value
	s.used += cost - oldCost
	return nil
}

func (s *Server) get(ns, key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[ns][key]
	return v, ok
}

func (s *Server) delete(ns, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.data[ns]
	old, ok := m[key]
	if !ok {
		return
	}
	cost := entryCost(ns, key, old)
	s.used -= cost
	if s.access != nil {
		owner := s.access.owner(ns, key)
		u := s.usage[owner]
		s.usage[owner] = usage{u.bytes - cost, u.keys - 1}
	}
	delete(m, key)
	if len(m) == 0 {
		delete(s.data, ns)
	}
}

// list returns ns's pairs sorted by key; the values are shared, not copied.
func (s *Server) list(ns string) []KV {
	s.mu.Lock()
	kvs := make([]KV, 0, len(s.data[ns]))
	for k, v := range s.data[ns] {
		kvs = append(kvs, KV{k, v})
	}
	s.mu.Unlock()
	slices.SortFunc(kvs, func(a, b KV) int { return strings.Compare(a.Key, b.Key) })
	return kvs
}

// Listen listens on the Unix socket path, creating its directory; anyone
// may connect. A socket
// file left by a dead store is removed; if a store still answers there, or
// path is not a socket, Listen fails instead of stealing it.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
				Err: fmt.Errorf("%s exists and is not a socket", path)}
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, &net.OpError{Op: "listen", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
				Err: errors.New("a store is already serving there")}
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Every component may connect: what each may do is decided by its
	// credentials (SO_PEERCRED), not by the socket's mode.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}
