package httpd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// queryTimeout bounds QueryStatus, whatever the caller's context allows.
const queryTimeout = 2 * time.Second

// QueryStatus asks init for the appliance's status over the ctl protocol on
// the Unix socket at path. It gives up after 2 s or when ctx is done.
func QueryStatus(ctx context.Context, path string) (*ctl.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	resp, err := ctl.Do(ctx, path, ctl.Request{Verb: ctl.VerbStatus})
	switch {
	case err != nil:
		return nil, fmt.Errorf("ctl status via %s: %w", path, err)
	case !resp.OK:
		return nil, fmt.Errorf("ctl status via %s: init refused: %s", path, resp.Error)
	case resp.Status == nil:
		return nil, errors.New("ctl status: the response carries no status")
	}
	return resp.Status, nil
}

// QueryEvents asks init for its journal's events from number since on
// (ctl verb events), with QueryStatus's bounds.
func QueryEvents(ctx context.Context, path string, since uint64) ([]journal.Event, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	resp, err := ctl.Do(ctx, path, ctl.Request{Verb: ctl.VerbEvents, Since: since})
	switch {
	case err != nil:
		return nil, since, fmt.Errorf("ctl events via %s: %w", path, err)
	case !resp.OK:
		return nil, since, fmt.Errorf("ctl events via %s: init refused: %s", path, resp.Error)
	}
	return resp.Events, resp.Next, nil
}

// QueryLogs asks init for the lines of component name (every component's
// if empty) from number since on (ctl verb logs), with QueryStatus's
// bounds.
func QueryLogs(ctx context.Context, path, name string, since uint64) ([]journal.Line, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	resp, err := ctl.Do(ctx, path, ctl.Request{Verb: ctl.VerbLogs, Name: name, Since: since})
	switch {
	case err != nil:
		return nil, since, fmt.Errorf("ctl logs via %s: %w", path, err)
	case !resp.OK:
		return nil, since, fmt.Errorf("ctl logs via %s: init refused: %s", path, resp.Error)
	}
	return resp.Lines, resp.Next, nil
}
