// Package exitcode names the exit statuses by which a keepnet component says
// why it ended, so that the supervisor (boot/supervisor) can log the reason
// by name and decide what to do: "exit status 3 (broken channel)" is
// restarted like any crash, "exit status 78 (configuration error)" is not
// (restarting will not help).
//
// A component's main ends with Exit(err); Of maps the error to its status.
// Names are for the supervisor's log and the status of a component.
package exitcode

import (
	"errors"
	"fmt"
	"log"
	"os"

	"keepnet/kernel/channel"
)

// The exit statuses. Go's runtime uses 2 for a panic or a fatal fault.
const (
	OK      = 0
	Failure = 1 // any error without a status of its own
	Panic   = 2 // the Go runtime's: a panic or a fatal fault
	// BrokenChannel: a neighbour broke a channel (a corrupt ring index, an
	// impossible reply, a protocol violation; kernel/channel.ErrBroken).
	// The component ends rather than spin or trust the channel again; its
	// restart gives both sides fresh channels.
	BrokenChannel = 3
	// Config is EX_CONFIG from sysexits.h: the component's configuration
	// is wrong, and restarting it will not help.
	Config = 78
)

// ErrConfig marks a configuration error: Of maps an error wrapping it to
// Config.
var ErrConfig = errors.New("configuration error")

// names are the reasons worth a word in a log; 1 and 2 say nothing more
// than the log lines before them.
var names = map[int]string{
	BrokenChannel: "broken channel",
	Config:        "configuration error",
}

// Name is the reason an exit status stands for, or "" for one without a
// name (0, 1 and 2 among them).
func Name(code int) string { return names[code] }

// Describe is how the supervisor states an exit: "exit status 3 (broken
// channel)", or just "exit status 9" for a status without a name.
func Describe(code int) string {
	if n := Name(code); n != "" {
		return fmt.Sprintf("exit status %d (%s)", code, n)
	}
	return fmt.Sprintf("exit status %d", code)
}

// Of is the exit status for a component that ends with err.
func Of(err error) int {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, channel.ErrBroken):
		return BrokenChannel
	case errors.Is(err, ErrConfig):
		return Config
	}
	return Failure
}

// Exit ends the process with Of(err), logging err first if there is one.
func Exit(err error) {
	if err != nil {
		log.Print(err)
	}
	os.Exit(Of(err))
}
