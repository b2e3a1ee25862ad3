package ip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"keepnet/servers/header"
)

// Config is what the IP server is told at start and keeps in the store.
type Config struct {
	Addr    netip.Prefix // our address and the connected subnet, e.g. 10.0.2.15/24
	Gateway netip.Addr   // default gateway, in the subnet; invalid (zero) for none
	MAC     [6]byte      // the NIC's address
	MTU     int          // IP MTU of the link; 0 means DefaultMTU
}

// MTU limits: RFC 791's minimum every link must carry, and a jumbo frame.
const (
	DefaultMTU = 1500
	MinMTU     = 68
	MaxMTU     = 9000
)

// ErrBadConfig is returned (wrapped with the reason) for a Config that fails
// Validate or stored bytes UnmarshalConfig cannot read.
var ErrBadConfig = errors.New("bad ip config")

// Validate reports whether c can run a Stack: an IPv4 address with a prefix
// length up to 30 (so the subnet has room for a neighbour), a gateway in
// the subnet if any, a unicast MAC, and an MTU of 0 or MinMTU..MaxMTU.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	a := c.Addr.Addr()
	if !c.Addr.IsValid() || !a.Is4() || c.Addr.Bits() > 30 || a.IsUnspecified() || a.IsMulticast() {
		return bad("address %v is not a usable IPv4 address/prefix", c.Addr)
	}
	if a == broadcastOf(c.Addr) || a == c.Addr.Masked().Addr() {
		return bad("address %v is the subnet's broadcast or network address", c.Addr)
	}
	if c.Gateway.IsValid() && (!c.Gateway.Is4() || !c.Addr.Contains(c.Gateway) || c.Gateway == a) {
		return bad("gateway %v is not another address in %v", c.Gateway, c.Addr.Masked())
	}
	if m := header.MAC(c.MAC); m.IsMulticast() || m == (header.MAC{}) {
		return bad("MAC %v is not a unicast address", m)
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		return bad("MTU %d not in %d..%d", c.MTU, MinMTU, MaxMTU)
	}
	return nil
}

// broadcastOf is the directed broadcast address of p's subnet.
func broadcastOf(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|host)
	return netip.AddrFrom4(a)
}

// Stored configuration, version 1 (19 bytes, big-endian):
//
//	0        1        5        6       7        11    17    19
//	+--------+--------+--------+-------+--------+-----+-----+
//	| ver=1  | addr   | bits   | flags | gateway| MAC | MTU |
//	+--------+--------+--------+-------+--------+-----+-----+
//
// flags bit 0: a gateway is set (else the gateway bytes are zero). A later
// version may append fields; UnmarshalConfig refuses versions it does not
// know, so an old binary never half-reads a newer record.
const (
	configVersion1 = 1
	configSize1    = 19
	configHasGW    = 1 << 0
)

// MarshalConfig encodes c for the store. c should pass Validate.
func MarshalConfig(c Config) []byte {
	b := make([]byte, configSize1)
	b[0] = configVersion1
	a := c.Addr.Addr().As4()
	copy(b[1:5], a[:])
	b[5] = uint8(c.Addr.Bits())
	if c.Gateway.IsValid() {
		b[6] |= configHasGW
		g := c.Gateway.As4()
		copy(b[7:11], g[:])
	}
	copy(b[11:17], c.MAC[:])
	binary.BigEndian.PutUint16(b[17:19], uint16(c.MTU))
	return b
}

// UnmarshalConfig decodes what MarshalConfig stored and validates it.
func UnmarshalConfig(b []byte) (Config, error) {
	if len(b) == 0 {
		return Config{}, fmt.Errorf("%w: empty record", ErrBadConfig)
	}
	if b[0] != configVersion1 {
		return Config{}, fmt.Errorf("%w: unknown version %d", ErrBadConfig, b[0])
	}
	if len(b) != configSize1 {
		return Config{}, fmt.Errorf("%w: version 1 record of %d bytes, want %d", ErrBadConfig, len(b), configSize1)
	}
	if b[5] > 32 || b[6]&^configHasGW != 0 {
		return Config{}, fmt.Errorf("%w: prefix length %d, flags %#x", ErrBadConfig, b[5], b[6])
	}
	var c Config
	c.Addr = netip.PrefixFrom(netip.AddrFrom4([4]byte(b[1:5])), int(b[5]))
	if b[6]&configHasGW != 0 {
		c.Gateway = netip.AddrFrom4([4]byte(b[7:11]))
	}
	c.MAC = [6]byte(b[11:17])
	c.MTU = int(binary.BigEndian.Uint16(b[17:19]))
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
