package httpd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"keepnet/boot/ctl"
)

// queryTimeout bounds QueryStatus, whatever the caller's context allows.
const queryTimeout = 2 * time.Second

// lastID is the id of the last ctl request this process sent. Ids only grow,
// so a late answer to an earlier, abandoned query is never taken for the
// answer to a new one, even over a transport shared between queries.
var lastID atomic.Uint64

// QueryStatus asks init for the appliance's status over the ctl protocol on
// the Unix socket at path: it sends one status request and returns the
// status from the response carrying the request's id, skipping any other
// response. It gives up after 2 s or when ctx is done.
func QueryStatus(ctx context.Context, path string) (*ctl.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("ctl status: %w", err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	st, err := roundTripStatus(conn, lastID.Add(1))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection's deadline is ctx's, so ctx is done or about to
			// be: report why it ended.
			<-ctx.Done()
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("ctl status via %s: %w", path, err)
	}
	return st, nil
}

// roundTripStatus sends a status request with the given id on conn and reads
// responses until the one with that id.
func roundTripStatus(conn net.Conn, id uint64) (*ctl.Status, error) {
	req, err := json.Marshal(ctl.Request{ID: id, Verb: ctl.VerbStatus})
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 0, 4096), ctl.MaxLine)
	for sc.Scan() {
		var resp ctl.Response
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			return nil, fmt.Errorf("malformed response %.80q: %w", sc.Bytes(), err)
		}
		if resp.ID != id {
			continue // a late answer to someone else's request
		}
		switch {
		case !resp.OK:
			return nil, fmt.Errorf("init refused request %d: %s", id, resp.Error)
		case resp.Status == nil:
			return nil, fmt.Errorf("response %d carries no status", id)
		}
		return resp.Status, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("connection closed before the response")
}
