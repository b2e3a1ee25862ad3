package nic

import (
	"fmt"
	"time"

	"keepnet/drivers/netdev"
	"keepnet/kernel/channel"
)

// The device watchdog: a device can stop without the driver's doing (a
// wedged DMA engine, Linux's e1000 "Tx Unit Hang"); the driver then waits
// forever for completions that never come, and IP's queue grows behind it.
// Every WatchEvery the loop reads the device's Progress and compares it
// with the previous look:
//
//   - transmit hang: descriptors pending and the transmit head where it
//     was, with the link up, for DefaultWatchLimit;
//   - receive stall: empty buffers posted and the receive head where it
//     was while the device's missed-packet count grows, for the limit too.
//     (Misses with no buffer posted are IP being slow, which a reset
//     would not cure.)
//
// Either resets the device (netdev.Device.Reset) while serving the same IP
// generation: the buffers the device held are requeued in order, receive
// buffers to be posted again and frames to be sent again (a duplicate at
// worst), so nothing is lost and IP notices nothing but a pause. Resets are
// counted by reason in Counters and logged by the process loop.

// Watchdog tuning.
const (
	DefaultWatchLimit = 2 * time.Second
	watchLooks        = 4 // looks per limit
)

// Reasons for a device reset (Counters, the log).
const (
	ResetTxHang  = "transmit hang"
	ResetRxStall = "receive stall"
)

// watchdog remembers the last look at the device.
type watchdog struct {
	next   time.Time // when to look again
	last   netdev.Progress
	looked bool
	// txSince and rxSince are when the device was last seen making
	// progress (or having nothing to do) on each ring.
	txSince, rxSince time.Time
}

// look compares p, read at now, with the last look and returns the reason
// for a reset, or "".
func (w *watchdog) look(now time.Time, p netdev.Progress, limit time.Duration) string {
	last, looked := w.last, w.looked
	w.last, w.looked = p, true
	if !looked {
		w.txSince, w.rxSince = now, now
		return ""
	}
	if p.TxPending == 0 || !p.LinkUp || p.TxHead != last.TxHead {
		w.txSince = now
	}
	if p.RxPosted == 0 || p.RxHead != last.RxHead || p.RxMissed == last.RxMissed {
		w.rxSince = now
	}
	switch {
	case now.Sub(w.txSince) >= limit:
		return ResetTxHang
	case now.Sub(w.rxSince) >= limit:
		return ResetRxStall
	}
	return ""
}

// Watch is the device watchdog's turn in the loop: at most every
// limit/watchLooks it reads the device's progress, and resets a stuck device.
// It returns the reason when it did.
func (d *Driver) Watch(now time.Time, limit time.Duration) (string, error) {
	if d.peer == nil || now.Before(d.watch.next) {
		return "", nil
	}
	d.watch.next = now.Add(limit / watchLooks)
	reason := d.watch.look(now, d.dev.Progress(), limit)
	if reason == "" {
		return "", nil
	}
	if err := d.resetStuck(); err != nil {
		return reason, fmt.Errorf("nic: reset after a %s: %w", reason, err)
	}
	switch reason {
	case ResetTxHang:
		d.counters.TxHangResets++
	case ResetRxStall:
		d.counters.RxStallResets++
	}
	d.watch = watchdog{next: d.watch.next}
	return reason, nil
}

// resetStuck resets the device while serving the same peer: what the device
// held goes back to the front of the queues, in order.
func (d *Driver) resetStuck() error {
	f, err := d.dev.Reset()
	if err != nil {
		return err
	}
	d.counters.Resets++
	d.waitRX = d.requeue(f.RX, d.waitRX)
	d.waitTX = d.requeue(f.TX, d.waitTX)
	return nil
}

// requeue puts the requests of cookies in front of q.
func (d *Driver) requeue(cookies []uint64, q []channel.Msg) []channel.Msg {
	if len(cookies) == 0 {
		return q
	}
	out := make([]channel.Msg, 0, len(cookies)+len(q))
	for _, c := range cookies {
		probe := d.isProbe(c)
		m := d.untrack(c)
		if probe {
			d.probe.done(nil) // the reset took it back unfilled
			d.probe = nil
			continue
		}
		out = append(out, m)
	}
	return append(out, q...)
}
