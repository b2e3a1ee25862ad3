package wiring

import (
	"os"
	"sync"
)

// EnvTestHooks, set to "1" in a component's environment, makes it run the
// test hooks init sends (TypeHook). Init sets it only when the kernel
// command line says keepnet.testhooks=1.
const EnvTestHooks = "KEEPNET_TESTHOOKS"

// TestHooksEnabled reports whether this process runs test hooks.
func TestHooksEnabled() bool { return os.Getenv(EnvTestHooks) == "1" }

// Hook is a test hook: something a test makes a component do in its loop,
// by name.
type Hook struct {
	Name string
	Run  func()
}

// The hooks every watched component has.
const (
	HookSpin     = "spin"     // the loop spins forever: an infinite loop
	HookDeadlock = "deadlock" // the loop and a second goroutine wait for each other's lock forever
)

func builtinHooks() map[string]func() {
	return map[string]func(){HookSpin: spin, HookDeadlock: deadlock, HookProbePools: probePools}
}

// spin never returns and never blocks.
func spin() {
	for n := uint64(0); ; n++ {
	}
}

// deadlock takes lock a then b while a second goroutine takes b then a, each
// holding the first while it waits for the second: neither ever returns.
// The Go runtime does not notice (other goroutines still run).
func deadlock() {
	var a, b sync.Mutex
	var both sync.WaitGroup
	both.Add(2)
	a.Lock()
	go func() {
		b.Lock()
		both.Done()
		both.Wait()
		a.Lock()
	}()
	both.Done()
	both.Wait()
	b.Lock()
}
