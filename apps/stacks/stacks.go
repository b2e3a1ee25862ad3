// Package stacks opens the network stack an application main was told to
// use: Go's net package on the Linux stack, or keepnet's own through its
// socket library, which needs the application's wiring socket (an
// application on keepnet's stack is a wired component, kernel/wiring).
package stacks

import (
	"fmt"
	"time"

	"keepnet/apps/netapi"
	"keepnet/kernel/wiring"
	"keepnet/servers/socket"
)

// joinTimeout bounds the wait for init's wiring.
const joinTimeout = 10 * time.Second

// Open returns the Network for a stack name (netapi.StackLinux or
// netapi.StackKeepnet).
func Open(stack string) (netapi.Network, error) {
	if stack != netapi.StackKeepnet {
		return netapi.Lookup(stack)
	}
	conn, setup, err := wiring.JoinInherited(joinTimeout)
	if err != nil {
		// Not started by keepnet's init (no wiring socket): restarting
		// will not help.
		return nil, fmt.Errorf("keepnet stack: %w: %w", netapi.ErrUnavailable, err)
	}
	st, err := socket.Open(conn, setup)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("keepnet stack: %w", err)
	}
	// An application is not ready when its stack is, but once it has
	// bound what it serves: it says so itself (kernel/notify).
	return st, nil
}
