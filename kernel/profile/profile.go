// Package profile lets an operator take a CPU profile of a running
// component: `keepnet profile NAME` asks init, which signals the process
// (SIGUSR1 starts the profile, the next SIGUSR1 stops it) and sends the
// file back. A component opts in with one call to OnSignal in its main.
//
// The profile is written to Path(pid) through a temporary file renamed
// into place when complete, so init never reads half a profile.
package profile

import (
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
)

// Dir is where the profiles are written in the guest.
const Dir = "/run/keepnet/profile"

// Path is the profile file of the process pid.
func Path(pid int) string { return filepath.Join(Dir, strconv.Itoa(pid)+".pprof") }

// OnSignal makes SIGUSR1 toggle a CPU profile of this process, written to
// Path(its pid) when it stops.
func OnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			if err := record(Path(os.Getpid()), c); err != nil {
				log.Printf("profile: %v", err)
			}
		}
	}()
}

// record profiles from now until the next signal on c.
func record(path string, c <-chan os.Signal) error {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	<-c
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
