package dhcp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Ports (RFC 2131 §4.1).
const (
	ServerPort = 67
	ClientPort = 68
)

// Message types (option 53, RFC 2132 §9.6).
const (
	Discover = 1
	Offer    = 2
	Request  = 3
	Decline  = 4
	Ack      = 5
	Nak      = 6
	Release  = 7
)

// Options the client sends or reads (RFC 2132).
const (
	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optDNS         = 6
	optHostname    = 12
	optRequestedIP = 50
	optLeaseTime   = 51
	optMessageType = 53
	optServerID    = 54
	optParamList   = 55
	optMaxSize     = 57
	optRenewal     = 58 // T1
	optRebinding   = 59 // T2
	optClientID    = 61
	optEnd         = 255
)

// Layout of the fixed part (RFC 2131 §2, figure 1).
const (
	offOp     = 0
	offHtype  = 1
	offHlen   = 2
	offXid    = 4
	offSecs   = 8
	offFlags  = 10
	offCiaddr = 12
	offYiaddr = 16
	offSiaddr = 20
	offChaddr = 28
	offCookie = 236
	fixedSize = 240 // through the magic cookie

	opRequest  = 1
	opReply    = 2
	htypeEther = 1
	flagBcast  = 0x8000
	// maxMessage is the largest message the client accepts and says it
	// accepts (option 57): what fits a 1500-byte MTU without fragments.
	maxMessage = 1500 - 20 - 8
)

var magicCookie = [4]byte{99, 130, 83, 99}

// Message is a DHCP message as the client reads or writes it: the fields
// and options it uses, nothing else.
type Message struct {
	Op     byte // opRequest or opReply
	Xid    uint32
	Secs   uint16
	Bcast  bool       // the broadcast flag: answer to the broadcast address
	Ciaddr netip.Addr // the client's address, when it has one
	Yiaddr netip.Addr // "your" address, in an offer or ack
	MAC    [6]byte    // chaddr
	Type   byte       // option 53

	Mask      netip.Addr   // option 1
	Router    netip.Addr   // option 3, the first router
	DNS       []netip.Addr // option 6
	ServerID  netip.Addr   // option 54
	Requested netip.Addr   // option 50
	Lease     time.Duration
	T1, T2    time.Duration // options 58, 59; zero if absent
	Hostname  string        // option 12
}

// Errors of Parse.
var (
	ErrShort   = errors.New("dhcp: message too short")
	ErrCookie  = errors.New("dhcp: no magic cookie")
	ErrOption  = errors.New("dhcp: malformed option")
	ErrNotOurs = errors.New("dhcp: not a reply for an Ethernet client")
)

// Parse reads a message from b (a UDP payload). Unknown options are
// skipped; an option overrunning the message is an error. Option
// overloading (RFC 2132 §9.3) is not followed: what the client needs is
// never put in the file or sname fields by the servers it talks to, and a
// message that needed them reads as one without those options.
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < fixedSize {
		return m, ErrShort
	}
	if [4]byte(b[offCookie:fixedSize]) != magicCookie {
		return m, ErrCookie
	}
	if b[offHtype] != htypeEther || b[offHlen] != 6 {
		return m, ErrNotOurs
	}
	m.Op = b[offOp]
	m.Xid = binary.BigEndian.Uint32(b[offXid:])
	m.Secs = binary.BigEndian.Uint16(b[offSecs:])
	m.Bcast = binary.BigEndian.Uint16(b[offFlags:])&flagBcast != 0
	m.Ciaddr = addr4(b[offCiaddr:])
	m.Yiaddr = addr4(b[offYiaddr:])
	copy(m.MAC[:], b[offChaddr:])
	opts := b[fixedSize:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			break
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return m, fmt.Errorf("%w: option %d at %d overruns the message", ErrOption, code, i)
		}
		v := opts[i+2 : i+2+int(opts[i+1])]
		i += 2 + len(v)
		if err := m.option(code, v); err != nil {
			return m, err
		}
	}
	return m, nil
}

// option reads one option's value v into m.
func (m *Message) option(code byte, v []byte) error {
	bad := func() error { return fmt.Errorf("%w: option %d of %d bytes", ErrOption, code, len(v)) }
	seconds := func() (time.Duration, error) {
		if len(v) != 4 {
			return 0, bad()
		}
		return time.Duration(binary.BigEndian.Uint32(v)) * time.Second, nil
	}
	var err error
	switch code {
	case optMessageType:
		if len(v) != 1 {
			return bad()
		}
		m.Type = v[0]
	case optSubnetMask:
		if len(v) != 4 {
			return bad()
		}
		m.Mask = addr4(v)
	case optRouter:
		if len(v) < 4 || len(v)%4 != 0 {
			return bad()
		}
		m.Router = addr4(v)
	case optDNS:
		if len(v) < 4 || len(v)%4 != 0 {
			return bad()
		}
		m.DNS = m.DNS[:0]
		for j := 0; j < len(v); j += 4 {
			m.DNS = append(m.DNS, addr4(v[j:]))
		}
	case optServerID:
		if len(v) != 4 {
			return bad()
		}
		m.ServerID = addr4(v)
	case optRequestedIP:
		if len(v) != 4 {
			return bad()
		}
		m.Requested = addr4(v)
	case optLeaseTime:
		m.Lease, err = seconds()
	case optRenewal:
		m.T1, err = seconds()
	case optRebinding:
		m.T2, err = seconds()
	case optHostname:
		m.Hostname = string(v)
	}
	return err
}

// Append appends m in wire form to b: the fixed part, its options (a
// client identifier and, in a request, the parameter request list with
// them), an end option, and padding to BOOTP's 300 bytes (some relays drop
// shorter messages). Every field Parse reads is written, so tests play the
// server with it too.
func (m Message) Append(b []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, fixedSize)...)
	f := b[start:]
	f[offOp] = m.Op
	f[offHtype] = htypeEther
	f[offHlen] = 6
	binary.BigEndian.PutUint32(f[offXid:], m.Xid)
	binary.BigEndian.PutUint16(f[offSecs:], m.Secs)
	if m.Bcast {
		binary.BigEndian.PutUint16(f[offFlags:], flagBcast)
	}
	put4(f[offCiaddr:], m.Ciaddr)
	put4(f[offYiaddr:], m.Yiaddr)
	copy(f[offChaddr:], m.MAC[:])
	copy(f[offCookie:], magicCookie[:])

	b = append(b, optMessageType, 1, m.Type)
	// The client identifier: hardware type and MAC (RFC 2132 §9.14).
	b = append(b, optClientID, 7, htypeEther)
	b = append(b, m.MAC[:]...)
	if m.Requested.IsValid() {
		b = appendAddr(b, optRequestedIP, m.Requested)
	}
	if m.ServerID.IsValid() {
		b = appendAddr(b, optServerID, m.ServerID)
	}
	if m.Op == opRequest && m.Type != Release && m.Type != Decline {
		b = append(b, optParamList, 4, optSubnetMask, optRouter, optDNS, optLeaseTime)
		b = append(b, optMaxSize, 2, byte(maxMessage>>8), byte(maxMessage&0xff))
	}
	if m.Mask.IsValid() {
		b = appendAddr(b, optSubnetMask, m.Mask)
	}
	if m.Router.IsValid() {
		b = appendAddr(b, optRouter, m.Router)
	}
	if n := len(m.DNS); n > 0 && n <= 63 {
		b = append(b, optDNS, byte(4*n))
		for _, a := range m.DNS {
			v := a.As4()
			b = append(b, v[:]...)
		}
	}
	for _, t := range []struct {
		code byte
		d    time.Duration
	}{{optLeaseTime, m.Lease}, {optRenewal, m.T1}, {optRebinding, m.T2}} {
		if t.d > 0 {
			b = append(b, t.code, 4)
			b = binary.BigEndian.AppendUint32(b, uint32(t.d/time.Second))
		}
	}
	if m.Hostname != "" && len(m.Hostname) <= 255 {
		b = append(b, optHostname, byte(len(m.Hostname)))
		b = append(b, m.Hostname...)
	}
	b = append(b, optEnd)
	for len(b)-start < 300 {
		b = append(b, optPad)
	}
	return b
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }

func put4(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
	}
}

func appendAddr(b []byte, code byte, a netip.Addr) []byte {
	v := a.As4()
	return append(append(b, code, 4), v[:]...)
}
