package httpd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// fakeInit listens on a Unix socket like init's ctl endpoint and answers each
// connection's first request with reply(request). It returns the socket path.
func fakeInit(t *testing.T, reply func(req ctl.Request) []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
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
				line, err := bufio.NewReader(c).ReadBytes('\n')
				if err != nil {
					t.Errorf("fake init: reading request: %v", err)
					return
				}
				req, err := ctl.ParseRequest(line)
				if err != nil || req.Verb != ctl.VerbStatus {
					t.Errorf("fake init: request %q = %+v, %v; want a status request", line, req, err)
					return
				}
				for _, l := range reply(req) {
					c.Write([]byte(l + "\n"))
				}
				// Hold the connection open: the client must stop reading
				// on its own once it has its answer.
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return path
}

func response(r ctl.Response) string {
	b, _ := json.Marshal(r)
	return string(b)
}

func TestQueryStatus(t *testing.T) {
	want := testStatus
	stale := &ctl.Status{Stack: "stale"}
	tests := []struct {
		name    string
		reply   func(req ctl.Request) []string
		wantErr string // "" for success
	}{
		{
			name: "answer",
			reply: func(req ctl.Request) []string {
				return []string{response(ctl.Response{ID: req.ID, OK: true, Status: want})}
			},
		},
		{
			name: "stale answers first",
			reply: func(req ctl.Request) []string {
				return []string{
					response(ctl.Response{ID: req.ID - 1, OK: true, Status: stale}),
					response(ctl.Response{ID: req.ID + 7, OK: false, Error: "old"}),
					response(ctl.Response{ID: req.ID, OK: true, Status: want}),
					response(ctl.Response{ID: req.ID, OK: true, Status: stale}),
				}
			},
		},
		{
			name: "refused",
			reply: func(req ctl.Request) []string {
				return []string{response(ctl.Response{ID: req.ID, Error: "supervisor busy"})}
			},
			wantErr: "supervisor busy",
		},
		{
			name: "no status",
			reply: func(req ctl.Request) []string {
				return []string{response(ctl.Response{ID: req.ID, OK: true})}
			},
			wantErr: "no status",
		},
		{
			// A line that is not JSON may be the tail of an answer to an
			// earlier client on a shared channel: skipped, so with nothing
			// else the query runs out of time.
			name:    "malformed",
			reply:   func(ctl.Request) []string { return []string{"{not json"} },
			wantErr: "deadline exceeded",
		},
	}
	for _, tt := range tests {
		path := fakeInit(t, tt.reply)
		got, err := QueryStatus(context.Background(), path)
		switch {
		case tt.wantErr == "" && (err != nil || !reflect.DeepEqual(got, want)):
			t.Errorf("%s: QueryStatus = %+v, %v; want %+v, nil", tt.name, got, err, want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: QueryStatus = %+v, %v; want error containing %q", tt.name, got, err, tt.wantErr)
		}
	}
}

func TestQueryStatusIDsGrow(t *testing.T) {
	ids := make(chan uint64, 2)
	path := fakeInit(t, func(req ctl.Request) []string {
		ids <- req.ID
		return []string{response(ctl.Response{ID: req.ID, OK: true, Status: testStatus})}
	})
	for range 2 {
		if _, err := QueryStatus(context.Background(), path); err != nil {
			t.Fatalf("QueryStatus: %v", err)
		}
	}
	if a, b := <-ids, <-ids; a == 0 || b <= a {
		t.Errorf("request ids %d then %d, want non-zero and growing", a, b)
	}
}

func TestQueryStatusNoAnswer(t *testing.T) {
	path := fakeInit(t, func(ctl.Request) []string { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := QueryStatus(ctx, path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("QueryStatus with no answer = %v, want an error wrapping %v", err, context.DeadlineExceeded)
	}
}

func TestQueryStatusClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
	}()
	if _, err := QueryStatus(context.Background(), path); err == nil {
		t.Error("QueryStatus on a closed connection = nil error, want one")
	}
	if _, err := QueryStatus(context.Background(), filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Error("QueryStatus on a missing socket = nil error, want one")
	}
}
