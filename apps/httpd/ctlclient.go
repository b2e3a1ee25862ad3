package httpd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"keepnet/boot/ctl"
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
