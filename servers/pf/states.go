package pf

import (
	"fmt"
	"net/netip"
	"time"
)

// StateInfo describes a tracked flow, for `keepnet pf states`.
type StateInfo struct {
	Proto uint8
	// Dir is the way the initiator's packets cross the filter.
	Dir                  Dir
	Initiator, Responder netip.AddrPort
	// Sides' progress, as pf shows it: SYN_SENT, ESTABLISHED, FIN_WAIT,
	// ... for TCP; SINGLE, MULTIPLE for the others.
	InitiatorState, ResponderState string
	Packets, Bytes                 [2]uint64 // initiator's, responder's
	Created, Expires               time.Time
	// Rule created the state, in the rule set of its time.
	Rule int
}

var peerStateNames = [peerStateEnd]string{
	"NO_TRAFFIC", "SINGLE", "MULTIPLE",
	"SYN_SENT", "ESTABLISHED", "CLOSING", "FIN_WAIT_2", "CLOSED",
}

func (s StateInfo) String() string {
	name, ok := protoNames[s.Proto]
	if !ok {
		name = fmt.Sprint(s.Proto)
	}
	return fmt.Sprintf("%s %v %v -> %v %s:%s pkts %d:%d bytes %d:%d rule %d",
		name, s.Dir, s.Initiator, s.Responder, s.InitiatorState, s.ResponderState,
		s.Packets[0], s.Packets[1], s.Bytes[0], s.Bytes[1], s.Rule)
}

// States lists the first limit live states at now (all of them if limit is
// negative), in slot order. It allocates: it is for the operator, not for
// the packet path.
func (f *Filter) States(now time.Time, limit int) []StateInfo {
	var out []StateInfo
	t := now.UnixNano()
	for i := range f.states {
		if len(out) == limit {
			break
		}
		st := &f.states[i]
		if !f.live[i] || st.expired(t, &f.rules.Timeouts) {
			continue
		}
		out = append(out, st.info(&f.rules.Timeouts))
	}
	return out
}

func (st *state) info(tm *Timeouts) StateInfo {
	k := &st.key
	lo := netip.AddrPortFrom(k.lo.netip(k.v6), k.loPort)
	hi := netip.AddrPortFrom(k.hi.netip(k.v6), k.hiPort)
	in := StateInfo{
		Proto: k.proto, Dir: k.loDir, Initiator: lo, Responder: hi,
		InitiatorState: peerStateNames[st.peers[initiator].state],
		ResponderState: peerStateNames[st.peers[responder].state],
		Packets:        st.packets, Bytes: st.bytes,
		Created: time.Unix(0, st.created), Expires: time.Unix(0, st.last).Add(st.timeout(tm)),
		Rule: int(st.rule),
	}
	if !st.initLo {
		in.Dir, in.Initiator, in.Responder = k.loDir.reverse(), hi, lo
	}
	return in
}
