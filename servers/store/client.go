package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Client defaults.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultMinBackoff = 10 * time.Millisecond
	DefaultMaxBackoff = time.Second
)

// OpError is the error of a Client operation.
type OpError struct {
	Op        string // "put", "get", "delete", "list", "restore"
	Namespace string
	Key       string // empty for list and restore
	Err       error
}

func (e *OpError) Error() string {
	name := e.Namespace
	if e.Key != "" {
		name += "/" + e.Key
	}
	return "store: " + e.Op + " " + name + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the operation ran out of time (store unreachable).
func (e *OpError) Timeout() bool { return errors.Is(e.Err, context.DeadlineExceeded) }

// Option configures a Client.
type Option func(*Client)

// WithTimeout bounds every operation, on top of its context's own deadline.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithBackoff sets the delay between failed dials: it starts at min and
// doubles up to max while the store stays unreachable.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.minBackoff, c.maxBackoff = min, max }
}

// nsKey names one remembered pair.
type nsKey struct{ ns, key string }

// Client talks to the store at one path; it is safe for concurrent use and
// connects lazily. It remembers what it writes and replays it to a restarted
// store (see the package doc's restart protocol).
type Client struct {
	path                   string
	timeout                time.Duration
	minBackoff, maxBackoff time.Duration

	closing   context.Context // done once Close is called
	close     context.CancelFunc
	closeOnce sync.Once
	seen      atomic.Uint64 // epoch of the last reply, for Epoch

	// token is a one-slot semaphore: the goroutine holding its value owns the
	// connection and every field below. Operations are thus serialized, which
	// keeps mem in the order the store applied the writes.
	token     chan struct{}
	conn      net.Conn // nil when not connected
	rd        *bufio.Reader
	connEpoch uint64 // epoch announced on conn
	lastID    uint64 // request ids only grow, across connections
	synced    uint64 // epoch of the store known to hold mem (minus unsure); 0 = none
	backoff   time.Duration
	retryAt   time.Time // no dial before this
	mem       map[string]map[string][]byte
	unsure    map[nsKey]struct{} // writes whose outcome is unknown
}

// Dial returns a client of the store listening at path. It does not connect
// until the first operation.
func Dial(path string, opts ...Option) *Client {
	c := &Client{
		path:       path,
		timeout:    DefaultTimeout,
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
		token:      make(chan struct{}, 1),
		mem:        make(map[string]map[string][]byte),
		unsure:     make(map[nsKey]struct{}),
	}
	for _, o := range opts {
		o(c)
	}
	c.closing, c.close = context.WithCancel(context.Background())
	c.token <- struct{}{}
	return c
}

// Epoch returns the epoch of the store instance that answered last, or 0.
func (c *Client) Epoch() uint64 { return c.seen.Load() }

// Close aborts operations in progress and closes the connection. The
// remembered pairs are dropped with the client.
func (c *Client) Close() error {
	c.closeOnce.Do(c.close)
	<-c.token
	defer func() { c.token <- struct{}{} }()
	c.drop()
	return nil
}

// Put stores value under ns/key and remembers it for replay.
func (c *Client) Put(ctx context.Context, ns, key string, value []byte) error {
	req := request{op: opPut, ns: ns, key: key, value: value}
	_, err := c.write(ctx, &req)
	return err
}

// Delete removes ns/key and forgets it. Deleting a missing key is no error.
func (c *Client) Delete(ctx context.Context, ns, key string) error {
	req := request{op: opDelete, ns: ns, key: key}
	_, err := c.write(ctx, &req)
	return err
}

// Get returns the value of ns/key and whether it exists.
func (c *Client) Get(ctx context.Context, ns, key string) ([]byte, bool, error) {
	req := request{op: opGet, ns: ns, key: key}
	rep, err := c.read(ctx, &req, nil)
	if err != nil {
		return nil, false, err
	}
	if rep.status == statusNotFound {
		return nil, false, nil
	}
	return rep.payload, true, nil
}

// List returns every pair of ns, sorted by key. It remembers nothing: use it
// to read another component's namespace.
func (c *Client) List(ctx context.Context, ns string) ([]KV, error) {
	req := request{op: opList, ns: ns}
	var kvs []KV
	_, err := c.read(ctx, &req, func(rep *reply) (err error) {
		kvs, err = decodeList(rep.payload)
		return err
	})
	return kvs, err
}

// Restore is List for the namespace's owner after its own restart: the pairs
// are also remembered as if this client had Put them, so they are replayed
// if the store restarts later. A pair this client already wrote keeps the
// client's value.
func (c *Client) Restore(ctx context.Context, ns string) ([]KV, error) {
	req := request{op: opList, ns: ns}
	var kvs []KV
	_, err := c.read(ctx, &req, func(rep *reply) (err error) {
		if kvs, err = decodeList(rep.payload); err != nil {
			return err
		}
		for _, kv := range kvs { // still holding the token
			if _, ok := c.mem[ns][kv.Key]; !ok {
				c.remember(ns, kv.Key, kv.Value)
			}
		}
		return nil
	})
	if err != nil {
		err.(*OpError).Op = "restore"
	}
	return kvs, err
}

// read runs a request that changes nothing. then, if not nil, runs on the
// OK reply while the token is still held.
func (c *Client) read(ctx context.Context, req *request, then func(*reply) error) (*reply, error) {
	opErr := &OpError{Op: req.op.String(), Namespace: req.ns, Key: req.key}
	if err := req.validate(); err != nil {
		opErr.Err = err
		return nil, opErr
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		opErr.Err = err
		return nil, opErr
	}
	defer c.release()
	rep, err := c.do(ctx, req)
	if err == nil && rep.status != statusOK && rep.status != statusNotFound {
		err = rep.err()
	}
	if err == nil && then != nil && rep.status == statusOK {
		err = then(rep)
	}
	if err != nil {
		opErr.Err = err
		return nil, opErr
	}
	return rep, nil
}

// write runs a Put or Delete, keeping mem in step (restart protocol, steps
// 1 and 3).
func (c *Client) write(ctx context.Context, req *request) (*reply, error) {
	opErr := &OpError{Op: req.op.String(), Namespace: req.ns, Key: req.key}
	if err := req.validate(); err != nil {
		opErr.Err = err
		return nil, opErr
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	if err := c.acquire(ctx); err != nil {
		opErr.Err = err
		return nil, opErr
	}
	defer c.release()

	k := nsKey{req.ns, req.key}
	prev, had := c.mem[req.ns][req.key]
	_, wasUnsure := c.unsure[k]
	if req.op == opPut {
		c.remember(req.ns, req.key, req.value)
	} else {
		c.forget(req.ns, req.key)
	}
	c.unsure[k] = struct{}{}

	rep, err := c.do(ctx, req)
	if err != nil { // outcome unknown: stays unsure
		opErr.Err = err
		return nil, opErr
	}
	if rep.status != statusOK { // refused: the store kept its old value
		if had {
			c.mem[req.ns][req.key] = prev
		} else {
			c.forget(req.ns, req.key)
		}
		if !wasUnsure {
			delete(c.unsure, k)
		}
		opErr.Err = rep.err()
		return nil, opErr
	}
	delete(c.unsure, k)
	return rep, nil
}

// remember records value (copied) as the last Put of ns/key. Token held.
func (c *Client) remember(ns, key string, value []byte) {
	m := c.mem[ns]
	if m == nil {
		m = make(map[string][]byte)
		c.mem[ns] = m
	}
	m[key] = append(make([]byte, 0, len(value)), value...)
}

// forget drops ns/key from mem. Token held.
func (c *Client) forget(ns, key string) {
	delete(c.mem[ns], key)
	if len(c.mem[ns]) == 0 {
		delete(c.mem, ns)
	}
}

// opContext bounds ctx by the client's timeout and by Close.
func (c *Client) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	stop := context.AfterFunc(c.closing, cancel)
	return ctx, func() { stop(); cancel() }
}

// acquire takes the token; an operation whose context is already done
// fails here, having changed nothing.
func (c *Client) acquire(ctx context.Context) error {
	if ctx.Err() != nil {
		return c.ctxErr(ctx, nil)
	}
	select {
	case <-c.token:
		if c.closing.Err() != nil {
			c.token <- struct{}{}
			return net.ErrClosed
		}
		return nil
	case <-ctx.Done():
		return c.ctxErr(ctx, nil)
	}
}

func (c *Client) release() { c.token <- struct{}{} }

// ctxErr explains why ctx ended, with the last failure seen while retrying.
func (c *Client) ctxErr(ctx context.Context, last error) error {
	if c.closing.Err() != nil {
		return net.ErrClosed
	}
	if last != nil && !errors.Is(last, ctx.Err()) {
		return fmt.Errorf("%w (last failure: %w)", ctx.Err(), last)
	}
	return ctx.Err()
}

// do sends req until a reply arrives or ctx ends, (re)connecting as needed.
// Every request is idempotent, so resending after a broken connection is
// safe. A reply with an error status is returned, not an error. Token held.
func (c *Client) do(ctx context.Context, req *request) (*reply, error) {
	var last error
	for {
		if ctx.Err() != nil {
			return nil, c.ctxErr(ctx, last)
		}
		if c.conn == nil {
			if err := c.connect(ctx); err != nil {
				last = err
				continue
			}
		}
		rep, err := c.roundTrip(ctx, req)
		if err != nil {
			last = err
			c.drop()
			continue
		}
		return rep, nil
	}
}

// connect waits out the back-off, dials, learns the epoch with Hello and
// brings the store up to date with mem (restart protocol, steps 2 and 3).
// Token held.
func (c *Client) connect(ctx context.Context) error {
	if wait := time.Until(c.retryAt); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err == nil {
		c.conn, c.rd, c.connEpoch = conn, bufio.NewReader(conn), 0
		if err = c.sync(ctx); err != nil {
			c.drop()
		}
	}
	if err != nil {
		c.backoff = min(max(2*c.backoff, c.minBackoff), c.maxBackoff)
		c.retryAt = time.Now().Add(c.backoff)
		return err
	}
	c.backoff, c.retryAt = 0, time.Time{}
	return nil
}

// sync says Hello and replays what the store on c.conn lacks. Token held.
func (c *Client) sync(ctx context.Context) error {
	rep, err := c.roundTrip(ctx, &request{op: opHello})
	if err != nil {
		return err
	}
	if rep.status != statusOK {
		return fmt.Errorf("%w: hello: %w: %s", ErrProtocol, statusErr(rep.status), rep.payload)
	}
	c.connEpoch = rep.epoch
	if c.synced != c.connEpoch { // a new store: it holds nothing of ours
		for ns, m := range c.mem {
			for key := range m {
				c.unsure[nsKey{ns, key}] = struct{}{}
			}
		}
		c.synced = c.connEpoch
	}
	// Resend every unsure write, in a stable order. A refusal (Full) leaves
	// the pair unsure, to be tried again on the next connection.
	keys := slices.SortedFunc(maps.Keys(c.unsure), func(a, b nsKey) int {
		if a.ns != b.ns {
			return strings.Compare(a.ns, b.ns)
		}
		return strings.Compare(a.key, b.key)
	})
	for _, k := range keys {
		req := request{op: opDelete, ns: k.ns, key: k.key}
		if v, ok := c.mem[k.ns][k.key]; ok {
			req.op, req.value = opPut, v
		}
		rep, err := c.roundTrip(ctx, &req)
		if err != nil {
			return err
		}
		if rep.status == statusOK {
			delete(c.unsure, k)
		}
	}
	return nil
}

// aLongTimeAgo is a deadline that makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip sends req on c.conn and reads its reply. Any error leaves the
// connection unusable. Token held.
func (c *Client) roundTrip(ctx context.Context, req *request) (*reply, error) {
	c.lastID++
	req.id = c.lastID
	conn := c.conn
	deadline, _ := ctx.Deadline() // opContext always sets one
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()

	if _, err := conn.Write(appendRequest(nil, req)); err != nil {
		return nil, err
	}
	body, err := readFrame(c.rd, maxReplyBody)
	if err != nil {
		return nil, err
	}
	rep, err := decodeReply(body)
	if err != nil {
		return nil, err
	}
	if rep.id != req.id {
		return nil, fmt.Errorf("%w: reply id %d, want %d", ErrProtocol, rep.id, req.id)
	}
	c.seen.Store(rep.epoch)
	if c.connEpoch != 0 && rep.epoch != c.connEpoch {
		return nil, fmt.Errorf("%w: epoch changed from %#x to %#x on one connection", ErrProtocol, c.connEpoch, rep.epoch)
	}
	if !stop() { // ctx ended meanwhile: the deadline may already be in the past
		return nil, ctx.Err()
	}
	return &rep, nil
}

// drop closes the connection, if any. Token held.
func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.rd, c.connEpoch = nil, nil, 0
	}
}
