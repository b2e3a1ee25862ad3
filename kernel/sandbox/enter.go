package sandbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// EnvSeccomp is the environment variable init sets for every component:
// "1" makes Enter install the component's seccomp filter, "0" (the kernel
// parameter keepnet.seccomp=0, for debugging) does not. Unset, as when a
// component runs outside the appliance in a test, means 0.
const EnvSeccomp = "KEEPNET_SECCOMP"

// Enter confines the calling process for good: no_new_privs, then the
// seccomp filter of profile p when EnvSeccomp says so. A component calls
// it first thing in main and exits if it fails: it must not run with less
// confinement than it was given.
func Enter(p Profile) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("sandbox: no_new_privs: %w", err)
	}
	if os.Getenv(EnvSeccomp) != "1" {
		return nil
	}
	return p.install()
}
