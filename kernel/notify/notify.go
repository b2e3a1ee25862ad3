// Package notify is how a component tells init that it is ready: that it
// serves (its listeners are bound, its device is reset, its stack answers).
// It is sd_notify's idea, over a pipe instead of a datagram socket, as in
// s6's notification-fd:
//
//  1. For every start of a component whose table row says it announces
//     readiness (boot/supervisor.ReadyNotify), init makes a fresh pipe. The
//     component inherits the write end; EnvFD names its descriptor.
//  2. Once the component serves, it writes Message (one line) and closes the
//     descriptor: Ready does both.
//  3. Init reads the pipe of that one process: what it reads can only be
//     that generation's announcement, never a stale one. A restarted
//     component gets a new pipe and is not ready until it says so again;
//     the appliance is ready again once it has.
//
// A component not started by keepnet's init (EnvFD unset: a test, a shell)
// has nobody to tell, and Ready does nothing. A component that never says
// it is ready keeps the appliance from being ready: `keepnet up --detach`
// fails at its timeout, naming it.
//
// Wired components (kernel/wiring) may say the same over their wiring
// socket (wiring.TypeUp), which init counts the same way.
package notify

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

// EnvFD is the environment variable naming the descriptor to write to.
const EnvFD = "KEEPNET_READY_FD"

// Message is the line a ready component writes.
const Message = "READY=1\n"

var once struct {
	sync.Once
	err error
}

// Ready tells init that this process serves. Only the first call writes;
// later ones return the first one's result.
func Ready() error {
	once.Do(func() {
		once.err = ready(os.Getenv(EnvFD))
		os.Unsetenv(EnvFD) // nothing this process starts may use it
	})
	return once.err
}

// ready writes Message to the descriptor named fd ("" : none) and closes it,
// so that nothing this process starts inherits it.
func ready(fd string) error {
	if fd == "" {
		return nil
	}
	n, err := strconv.Atoi(fd)
	if err != nil || n < 3 {
		return fmt.Errorf("notify: %s=%q is not a descriptor", EnvFD, fd)
	}
	f := os.NewFile(uintptr(n), "ready")
	defer f.Close()
	if _, err := f.WriteString(Message); err != nil {
		return fmt.Errorf("notify: telling init we are ready: %w", err)
	}
	return nil
}
