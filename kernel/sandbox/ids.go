package sandbox

import (
	"maps"
	"slices"

	"golang.org/x/sys/unix"
)

// Identity is what one component runs as.
type Identity struct {
	UID, GID uint32
	// Caps are the capabilities the component keeps (ambient
	// capabilities, CAP_* numbers); none for most.
	Caps []uintptr
}

// driverCaps are the capabilities a NIC driver keeps. Its device's files
// (/dev/uioN, the sysfs config and resource files) are chowned to it by
// init, so it needs no CAP_DAC_OVERRIDE; but the device DMAs to physical
// addresses, and
//   - /proc/self/pagemap reports page frame numbers only to CAP_SYS_ADMIN
//     (zeros otherwise: Documentation/admin-guide/mm/pagemap.rst). This is a
//     broad capability; with VFIO and an IOMMU the driver would use IOVAs
//     instead and could drop it.
//   - the DMA pools are mlocked, more than RLIMIT_MEMLOCK allows an
//     unprivileged process: CAP_IPC_LOCK.
var driverCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_IPC_LOCK}

// identities is the one table of uids: 1xx for the stack, 2xx for the
// applications. Each gid equals the uid. Root (0) is init alone.
var identities = map[string]Identity{
	"store":   {UID: 100, GID: 100},
	"e1000.0": {UID: 101, GID: 101, Caps: driverCaps},
	"ip":      {UID: 102, GID: 102},
	"udp":     {UID: 103, GID: 103},
	"tcp":     {UID: 104, GID: 104},
	"syscall": {UID: 105, GID: 105},
	"pf":      {UID: 106, GID: 106},
	// More NICs' drivers (boot/pid1's MaxNICs).
	"e1000.1": {UID: 107, GID: 107, Caps: driverCaps},
	"e1000.2": {UID: 108, GID: 108, Caps: driverCaps},
	"e1000.3": {UID: 109, GID: 109, Caps: driverCaps},
	// Applications. sshd runs only its built-in commands, so it needs no
	// root either.
	"httpd":    {UID: 200, GID: 200},
	"echo":     {UID: 201, GID: 201},
	"resolver": {UID: 202, GID: 202},
	"sshd":     {UID: 203, GID: 203},
}

// Lookup returns the identity of the named component, or false for a name
// the table does not know (which then runs as init does: add it here).
func Lookup(name string) (Identity, bool) {
	id, ok := identities[name]
	id.Caps = slices.Clone(id.Caps)
	return id, ok
}

// NameOf returns the component that runs as uid, or false.
func NameOf(uid uint32) (string, bool) {
	for name, id := range identities {
		if id.UID == uid {
			return name, true
		}
	}
	return "", false
}

// Names lists the components of the table, sorted.
func Names() []string { return slices.Sorted(maps.Keys(identities)) }
