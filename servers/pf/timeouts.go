package pf

import (
	"fmt"
	"strings"
	"time"
)

// Timeouts say how long an idle state lives, by protocol and by how far
// its flow has got. The names are pf.conf's (set timeout NAME SECONDS).
type Timeouts struct {
	TCPFirst       time.Duration // after the first SYN
	TCPOpening     time.Duration // until both sides have sent and been acknowledged
	TCPEstablished time.Duration // both sides established
	TCPClosing     time.Duration // after the first FIN
	TCPFinWait     time.Duration // both sides have sent FIN
	TCPClosed      time.Duration // after an RST, or both FINs acknowledged

	UDPFirst    time.Duration // after the first datagram
	UDPSingle   time.Duration // the initiator sent more than one, no reply yet
	UDPMultiple time.Duration // both sides have sent

	ICMPFirst time.Duration // after an echo request (and its replies)
	ICMPError time.Duration // after an ICMP error quoting an echo flow

	OtherFirst    time.Duration // other protocols, as for UDP
	OtherSingle   time.Duration
	OtherMultiple time.Duration
}

// DefaultTimeouts are OpenBSD pf's defaults. tcp.established stays at
// 24 hours: the table is bounded (Config.MaxStates) and full tables refuse
// only new flows, so an idle SSH session that lives a day costs one slot,
// which is what an appliance in front of servers should spend it on.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPFirst:       120 * time.Second,
		TCPOpening:     30 * time.Second,
		TCPEstablished: 24 * time.Hour,
		TCPClosing:     900 * time.Second,
		TCPFinWait:     45 * time.Second,
		TCPClosed:      90 * time.Second,
		UDPFirst:       60 * time.Second,
		UDPSingle:      30 * time.Second,
		UDPMultiple:    60 * time.Second,
		ICMPFirst:      20 * time.Second,
		ICMPError:      10 * time.Second,
		OtherFirst:     60 * time.Second,
		OtherSingle:    30 * time.Second,
		OtherMultiple:  60 * time.Second,
	}
}

// timeoutNames maps pf.conf's names to the fields, in the order they are
// printed.
var timeoutNames = []struct {
	name  string
	field func(*Timeouts) *time.Duration
}{
	{"tcp.first", func(t *Timeouts) *time.Duration { return &t.TCPFirst }},
	{"tcp.opening", func(t *Timeouts) *time.Duration { return &t.TCPOpening }},
	{"tcp.established", func(t *Timeouts) *time.Duration { return &t.TCPEstablished }},
	{"tcp.closing", func(t *Timeouts) *time.Duration { return &t.TCPClosing }},
	{"tcp.finwait", func(t *Timeouts) *time.Duration { return &t.TCPFinWait }},
	{"tcp.closed", func(t *Timeouts) *time.Duration { return &t.TCPClosed }},
	{"udp.first", func(t *Timeouts) *time.Duration { return &t.UDPFirst }},
	{"udp.single", func(t *Timeouts) *time.Duration { return &t.UDPSingle }},
	{"udp.multiple", func(t *Timeouts) *time.Duration { return &t.UDPMultiple }},
	{"icmp.first", func(t *Timeouts) *time.Duration { return &t.ICMPFirst }},
	{"icmp.error", func(t *Timeouts) *time.Duration { return &t.ICMPError }},
	{"other.first", func(t *Timeouts) *time.Duration { return &t.OtherFirst }},
	{"other.single", func(t *Timeouts) *time.Duration { return &t.OtherSingle }},
	{"other.multiple", func(t *Timeouts) *time.Duration { return &t.OtherMultiple }},
}

// timeoutNamed returns the field called name, or nil.
func (t *Timeouts) named(name string) *time.Duration {
	for _, n := range timeoutNames {
		if n.name == name {
			return n.field(t)
		}
	}
	return nil
}

// format writes a set timeout line for each timeout that is not the
// default, so that formatting round-trips.
func (t *Timeouts) format(b *strings.Builder) {
	def := DefaultTimeouts()
	for _, n := range timeoutNames {
		if v := *n.field(t); v != *n.field(&def) {
			fmt.Fprintf(b, "set timeout %s %d\n", n.name, int64(v/time.Second))
		}
	}
}
