package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mdlayher/vsock"
)

// DefaultTimeout bounds one request when the caller's context has no deadline.
const DefaultTimeout = 10 * time.Second

// VsockPort is the guest's control port when the channel is vsock.
const VsockPort = 1024

// Dial connects to a control channel named by path: a Unix socket (QEMU's end
// of the virtio-serial port, or init's socket inside the guest), or a regular
// file holding "vsock:CID" written by `keepnet up` when the channel is vsock.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("control channel %s: %w (is the appliance running? start it with 'keepnet up')", path, err)
	}
	if fi.Mode().IsRegular() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		cidText, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "vsock:")
		if !ok {
			return nil, fmt.Errorf("control channel %s: not a socket and not a vsock address file", path)
		}
		cid, err := strconv.ParseUint(cidText, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("control channel %s: bad vsock CID %q", path, cidText)
		}
		return vsock.Dial(uint32(cid), VsockPort, nil)
	}
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// Do sends one request over a fresh connection to path and returns its
// response. Responses with other ids (left over from an earlier client of a
// shared virtio-serial port) are skipped.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	conn, err := Dial(ctx, path)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	return RoundTrip(ctx, conn, req)
}

// lastID is the id of this process's last request. It starts at a random
// point, so that two processes sharing a channel are unlikely to meet, and
// only grows, so a late answer to an abandoned request is never taken for
// the answer to a new one.
var lastID atomic.Uint64

func init() { lastID.Store(rand.Uint64() >> 2) }

// RoundTrip sends req on conn and waits for the response with its id.
// A zero req.ID is replaced by the next id of this process.
func RoundTrip(ctx context.Context, conn net.Conn, req Request) (Response, error) {
	if req.ID == 0 {
		req.ID = lastID.Add(1)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return Response{}, fmt.Errorf("control channel: sending %s: %w", req.Verb, err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), MaxLine)
	for sc.Scan() {
		var resp Response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			continue // noise on the line, e.g. a partial answer to an earlier client
		}
		if resp.ID == req.ID {
			return resp, nil
		}
	}
	err = sc.Err()
	if err == nil {
		err = errors.New("connection closed before the answer")
	}
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The connection's deadline is the context's: it ran out a moment
		// before the context noticed.
		err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return Response{}, fmt.Errorf("control channel: waiting for the answer to %s: %w", req.Verb, err)
}
