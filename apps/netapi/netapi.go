// Package netapi is the seam between keepnet's demo applications and the
// network stack they run on. An application never calls net.Listen itself: it
// is handed a Network (or the listeners made from one) by its main, so the
// same code serves on Go's net package over the Linux stack today and on
// keepnet's own socket API once the UDP and TCP servers exist.
package netapi

import (
	"errors"
	"fmt"
	"net"
)

// Network is where an app gets its sockets: Go's net package on the Linux
// stack, keepnet's socket library (servers/socket) on keepnet's.
type Network interface {
	Listen(network, address string) (net.Listener, error)
	ListenPacket(network, address string) (net.PacketConn, error)
}

// Host is Go's net package, i.e. the Linux kernel's stack.
var Host Network = hostNetwork{}

type hostNetwork struct{}

func (hostNetwork) Listen(network, address string) (net.Listener, error) {
	return net.Listen(network, address)
}

func (hostNetwork) ListenPacket(network, address string) (net.PacketConn, error) {
	return net.ListenPacket(network, address)
}

// Stack names accepted by Lookup, as given to the mains' -stack flag.
const (
	StackLinux   = "linux"
	StackKeepnet = "keepnet"
)

// ErrUnavailable is returned by Lookup for a stack that is known but cannot
// be used by this build; retrying will not help.
var ErrUnavailable = errors.New("network stack unavailable")

// Lookup returns the Network for a stack name.
func Lookup(stack string) (Network, error) {
	switch stack {
	case StackLinux:
		return Host, nil
	case StackKeepnet:
		// keepnet's socket library needs the application's wiring
		// socket: apps/stacks opens it.
		return nil, fmt.Errorf("stack %q: %w here: open it with apps/stacks in a component init started", stack, ErrUnavailable)
	default:
		return nil, fmt.Errorf("unknown stack %q (want %q or %q)", stack, StackLinux, StackKeepnet)
	}
}
