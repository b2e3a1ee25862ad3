package relay

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTap attaches to the existing tap device name in the caller's network
// namespace (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR: each read and write is one
// Ethernet frame behind a virtio_net_hdr, and the kernel may offload TCP
// segmentation and checksums to the reader; give the Relay
// Config{VnetHdr: true}) and returns it non-blocking. It never
// creates a device: TUNSETIFF would silently make a new, unconnected tap
// when the name is mistyped or lives in another namespace.
func OpenTap(name string) (*os.File, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tap %q: want a name of 1 to %d characters", name, unix.IFNAMSIZ-1)
	}
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, fmt.Errorf("tap %s: no such interface in this network namespace (create it with 'ip tuntap add dev %s mode tap'; for a tap inside a namespace, run the relay under 'ip netns exec NS')", name, name)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/net/tun", Err: err}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			return nil, fmt.Errorf("tap %s: in use by another process (QEMU or another relay?): %w", name, err)
		case errors.Is(err, unix.EINVAL):
			return nil, fmt.Errorf("tap %s: not a tap device, or created with other flags (want 'ip tuntap add dev %s mode tap'): %w", name, name, err)
		case errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("tap %s: permission denied (needs CAP_NET_ADMIN or the tap's owner): %w", name, err)
		}
		return nil, fmt.Errorf("tap %s: TUNSETIFF: %w", name, err)
	}
	// Let the kernel hand over TCP/IPv4 segments of up to 64 KiB and
	// checksums to finish (vnet.go).
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO_ECN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: TUNSETOFFLOAD: %w", name, err)
	}
	// Wrapped while still blocking, the file stays out of Go's network
	// poller (whose threads would otherwise wake for every frame the
	// relay's own ppoll already handles); then it is made non-blocking for
	// the relay.
	f := os.NewFile(uintptr(fd), "tap:"+name)
	if err := unix.SetNonblock(fd, true); err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, os.NewSyscallError("fcntl", err))
	}
	return f, nil
}
