package store

import (
	"context"
	"errors"
	"time"
)

// RestoreRecords is how a restarted server takes back its records: it
// reads namespace ns with Restore (so the client replays them to a store
// that restarts later), retrying while the store itself may be coming up,
// until ctx ends. Each value is parsed with parse; a record that does not
// parse is deleted and reported in the error, the others are returned.
func RestoreRecords[R any](ctx context.Context, c *Client, ns string, parse func(key string, value []byte) (R, error)) ([]R, error) {
	var (
		kvs []KV
		err error
	)
	for { // the store may be restarting too
		if kvs, err = c.Restore(ctx, ns); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	var (
		rs   []R
		errs []error
	)
	for _, kv := range kvs {
		r, err := parse(kv.Key, kv.Value)
		if err != nil {
			errs = append(errs, err)
			c.Delete(ctx, ns, kv.Key)
			continue
		}
		rs = append(rs, r)
	}
	return rs, errors.Join(errs...)
}
