// Package header holds zero-copy views of the wire formats the IP server
// speaks: Ethernet II, ARP for Ethernet/IPv4, IPv4 and ICMPv4, IPv6 with
// its extension headers, ICMPv6 and Neighbor Discovery, and the Internet
// checksum. It holds wire formats only — no protocol logic, no state.
//
// Each format is a byte slice type ([Ethernet], [ARP], [IPv4], [ICMPv4]) with
// one-line accessors and setters under the RFC's diagram, in the manner of
// gVisor's pkg/tcpip/header. Accessors do no bounds checks of their own
// beyond Go's: they are safe exactly on a slice that the format's Validate
// function accepted ([ValidateEthernet], [ValidateARP], [ValidateIPv4],
// [ValidateICMPv4]). Each Validate function documents the conditions it
// checks and which accessors they make safe, and returns one of a small
// closed set of errors ([ErrTruncated], [ErrBadVersion], [ErrBadIHL],
// [ErrBadLength], [ErrBadChecksum], [ErrBadARP]; for IPv6 also
// [ErrIPv6Discard], [ErrBadNDP] and an [*IPv6ParamProblem] to answer). Untrusted bytes are
// validated once, where they enter; protocol code works on the views.
//
// A view re-reads its bytes at every accessor, so it is safe only over
// private memory: a length validated and then read again from a pool that
// another process can write is a double fetch, and a neighbour rewriting it
// between the two reads crashes the parser. The servers therefore copy what
// they parse out of shared memory first (servers/ip: the received frame;
// servers/transport: the delivered segment).
//
// Building goes the other way: Encode methods write a whole header from a
// fields struct into a slice the caller sized, and setters patch one field.
package header

import "errors"

// Errors returned by the Validate functions. The set is closed: callers may
// switch on them (the IP server counts each one separately).
var (
	ErrTruncated   = errors.New("truncated")       // shorter than its headers or than its length field says
	ErrBadVersion  = errors.New("bad IP version")  // IPv4 version field is not 4
	ErrBadIHL      = errors.New("bad IHL")         // IPv4 header length below 5 words
	ErrBadLength   = errors.New("bad length")      // a length field inconsistent with the header or over 65535
	ErrBadChecksum = errors.New("bad checksum")    // Internet checksum does not verify
	ErrBadARP      = errors.New("unsupported ARP") // ARP not for Ethernet/IPv4
)
