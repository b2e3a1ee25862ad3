package ip

import (
	"errors"
	"log"

	"keepnet/drivers/link"
	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
	"keepnet/servers/header"
	"keepnet/servers/pf/verdict"
)

// # The packet filter in the data path
//
// With a filter (ServerOptions.Filter, set by init only when the appliance
// has rules), every IPv4 and IPv6 datagram ip receives or sends waits for
// pf's verdict (servers/pf/verdict) before anything else is done with it:
//
//   - a received frame stays in its receive buffer, which goes to pf in
//     a question; a fresh buffer takes its place with the driver. Passed,
//     the frame is handled as any other; blocked, it is dropped. Either
//     way the buffer then goes back to the driver.
//   - a frame to send is built in its transmit buffer as always, but goes
//     to pf instead of the driver; passed, it goes to the driver with the
//     offload request it was built with (kept in the question); blocked,
//     its buffer is freed.
//
// ARP is not IP and never waits. IPv6's Neighbor Discovery and MLD do
// wait, like all of IPv6, and pf passes them without rules (servers/pf's
// packet.go says which and why), so that a rule set cannot cut the
// appliance off its link. Questions are queued like every request
// and sent in one batch per pass of the loop.
//
// The link to pf exists from the start, with or without a pf on it: its
// outstanding table is the queue of datagrams waiting for a verdict,
// bounded by MaxFilterWait. While pf is absent (not yet up, or restarting)
// they wait there; at its next generation's Attach they are resubmitted.
// Beyond the bound a received datagram is dropped and counted
// (FilterDrops), never passed, and does not hold a receive buffer. A
// transport's segment is not asked about beyond the bound: it waits among
// the held outputs (txRoom), as it does for a transmit buffer, so the
// transports are held back as when the device is slow; only what ip
// itself sends (ICMP, ARP's queue) is dropped there.
//
// Without a filter none of this runs: the only cost on the path is the
// test of an empty string (filtering).

// MaxFilterWait bounds the datagrams waiting for pf's verdict, both ways.
const MaxFilterWait = 512

// errFiltered: a frame to send was dropped, the filter's queue was full.
var errFiltered = errors.New("ip: the packet filter's queue is full")

// filtering reports whether datagrams wait for pf's verdict.
func (s *server) filtering() bool { return s.o.Filter != "" }

// filterFull reports whether MaxFilterWait datagrams wait for pf.
func (s *server) filterFull() bool {
	return s.filtering() && s.links[s.o.Filter].out.Full()
}

// isIP reports whether frame carries an IPv4 or IPv6 datagram: what pf
// judges.
func isIP(frame []byte) bool {
	if len(frame) <= header.EthernetMinimumSize {
		return false
	}
	t := header.Ethernet(frame).Type()
	return t == header.EtherTypeIPv4 || t == header.EtherTypeIPv6
}

// newFilterLink is the link to pf, before its first generation attaches.
func newFilterLink(name string) *peerLink {
	return &peerLink{name: name, out: channel.NewOutstanding(MaxFilterWait, 1)}
}

// ask queues the question about frame (a whole buffer of ours) going dir
// on interface n; arg goes with it and comes back. If MaxFilterWait
// datagrams already wait, the frame is dropped: ask frees its buffer and
// reports false.
func (s *server) ask(n *nic, frame pool.Ref, dir verdict.Dir, arg uint64) bool {
	l := s.links[s.o.Filter]
	m, err := l.out.Add(verdict.Ask(frame, uint16(n.index), header.EthernetMinimumSize, dir, arg))
	if err != nil {
		if s.filterDrops++; s.filterDrops&(s.filterDrops-1) == 0 { // 1, 2, 4...: never a log flood
			log.Printf("%d datagrams dropped waiting for %s: %d wait", s.filterDrops, s.o.Filter, l.out.Len())
		}
		s.poolOf(frame).MustFree(frame)
		return false
	}
	l.send(m)
	return true
}

// filterIn sends a frame received on the driver link drv (ref, a receive
// buffer) to pf, and gives the driver a fresh buffer in its place.
func (s *server) filterIn(drv *peerLink, ref pool.Ref) {
	s.ask(drv.nic, ref, verdict.In, 0)
	if drv.nic.posted < s.o.RxPosted {
		s.postRX(drv)
	}
}

// filterOut sends a frame to send on n (ref, a transmit buffer) to pf; off
// is the driver's offload request for it.
func (s *server) filterOut(n *nic, ref pool.Ref, off uint64) error {
	if !s.ask(n, ref, verdict.Out, off) {
		return errFiltered
	}
	return nil
}

// fromFilter takes pf's answer to a question.
func (s *server) fromFilter(l *peerLink, m channel.Msg) {
	q, ok := l.out.CompleteFrom(l.peer.Port, m)
	if !ok {
		return // an answer of an earlier generation: asked again
	}
	pass := verdict.StatusOf(m) == verdict.StatusPass
	if pass {
		s.filterPassed++
	} else {
		s.filterBlocked++
	}
	n := s.nics[q.Aux[0]] // our question, from our table: a valid index
	if verdict.DirOf(q) == verdict.In {
		s.passedIn(n, q.Ref, pass)
	} else {
		s.passedOut(n, q.Ref, q.Arg[1], pass)
	}
	s.releaseHeld() // room for a question
}

// passedIn handles a frame received on n that pf judged, and gives its
// buffer back to n's driver (or to the pool, if the driver has its
// RxPosted).
func (s *server) passedIn(n *nic, ref pool.Ref, pass bool) {
	if pass && n.stack != nil {
		if shared, err := s.rx.Bytes(ref); err == nil {
			n.stack.HandleFrame(s.receive(shared))
		}
	}
	ref.Len = uint32(s.rx.BufSize())
	if drv := s.links[n.driver]; drv != nil && n.posted < s.o.RxPosted {
		s.repostRX(drv, ref)
		return
	}
	s.rx.MustFree(ref)
}

// passedOut hands a frame pf passed to n's driver with its offload
// request off, or frees it.
func (s *server) passedOut(n *nic, ref pool.Ref, off uint64, pass bool) {
	drv := s.links[n.driver]
	if pass && drv != nil {
		s.request(drv, link.OpTx.Msg(ref, off))
		return
	}
	s.poolOf(ref).MustFree(ref)
}
