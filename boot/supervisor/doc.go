// Package supervisor is keepnet's reincarnation server. PID-1 init runs it to
// start every component of the appliance (the store, the servers, the
// drivers, the demo apps) from one declarative table of Specs, in dependency
// order, to restart each one when it dies, and to stop them all at poweroff.
//
// # Restart protocol
//
// Every start of a component is a new generation. Generation is 1 after the
// first start and grows by one at every restart; it is never reused, so a
// neighbour that tracks a component by name and generation can tell a stale
// reply from a fresh one (DESIGN.md, "Recovery, component by component").
// Restarts counts the starts after the first.
//
//   - Policy decides whether an exit is followed by a restart: Always
//     restarts after any exit, OnFailure after any exit but status 0, Never
//     after none (the component is left "stopped").
//   - Exit status 78 (DoNotRestart, EX_CONFIG) means "restarting me will not
//     help": whatever its policy the component is left "failed", and
//     LastExit says so.
//   - Other statuses kernel/exitcode names are logged and kept in LastExit
//     by name, "exit status 3 (broken channel)" (a neighbour broke a
//     channel; kernel/channel.ErrBroken), and restarted like any crash.
//   - The first crash restarts the component at once. A crash within
//     StableAfter of the start it ended is a repeated crash: the restart
//     waits MinBackoff ("backoff"), twice that after the next repeated crash,
//     and so on, capped at MaxBackoff. A run that lasted StableAfter resets
//     the back-off. A program that cannot be started at all (a missing
//     binary) counts as a crash.
//   - A component starts only when every one of its Deps is "running" (its
//     process exists; readiness, below, is not waited for), and a restart
//     waits for them the same way. A dependency's crash does not restart its
//     dependents: in the multiserver design they see the new generation and
//     recover by themselves.
//   - Kill sends SIGKILL (Signal any signal) and leaves the rules above to
//     bring the component back.
//   - A process that stops showing signs of life is hung: with
//     Config.HangAfter set, a component whose Spec.Liveness said its
//     process lives and then says nothing for HangAfter is killed, logged,
//     counted in State.Hangs, and its exit recorded as "hung (...)"; then
//     it is restarted as after a crash (hang.go). A machine that answers
//     slowly (a guest its host starves) stretches the limit, and a silence
//     shared by two components waits a little longer: neither is a hang. Restart stops it gracefully (SIGTERM, then SIGKILL after
//     StopTimeout) and starts it again at once: it counts in Restarts and
//     Generation but not as a crash, so it never causes a back-off.
//   - When Run's context ends, components are stopped in reverse dependency
//     order: one gets SIGTERM only once all its dependents have exited, and
//     SIGKILL if it is still there StopTimeout later. Run returns when every
//     child is reaped and every goroutine of the supervisor has ended.
//
// # Readiness
//
// Running is not serving: a web server runs a while before its listener is
// bound. A component whose Spec says ReadyNotify counts as ready only once
// its current process says so, in one of two ways:
//
//   - on its readiness pipe (package kernel/notify): every start gets a
//     fresh pipe whose write end the process inherits, named by
//     notify.EnvFD; the supervisor reads the other end and takes the line
//     notify.Message as the announcement;
//   - through the ready function the start's ExtraFiles hook was given:
//     init's hub calls it when a wired component says "up" on its wiring
//     socket (kernel/wiring.TypeUp).
//
// Either way the announcement belongs to one start: a later start (a
// restart) is not ready until its own process announces, and nothing an
// earlier process says can count for it. A ReadyRunning component is ready
// while its process runs. Ready is true when every component is ready (or
// stopped for good by its policy); NotReady names those that are not and
// why; Changed wakes a caller waiting for either, with no polling. Init
// aggregates this with its own conditions into "keepnet ready"
// (boot/pid1).
//
// Component output is never lost in a pipe nobody reads: each line a
// component writes to stdout or stderr goes to Config.Console prefixed with
// "name: ", and the supervisor's own messages with "supervisor: ".
//
// # How init uses it
//
//	sup, err := supervisor.New(supervisor.Config{Specs: table, Console: os.Stdout})
//	go reapOrphans(ctx, sup) // init's reaper, see below
//	err = sup.Run(ctx)       // until poweroff cancels ctx
//
// The control channel (boot/ctl) maps its verbs onto Status, Kill and
// Restart; "ready" is Ready.
//
// # Reaping: the contract with init
//
// The supervisor waits for its own children itself, through exec.Cmd.Wait.
// Init, as PID 1, must also reap the orphans re-parented to it (processes a
// crashed component left behind). The two must never take each other's
// children: a component reaped by init would leave the supervisor without its
// exit status. So init must never call wait4(-1, ...). It finds zombie
// children itself (a /proc scan, or waitid with WNOWAIT, which only looks)
// and reaps with wait4(pid, ...) only a pid for which Owns(pid) is false.
//
// Owns is exact: a pid is owned from before the fork that creates it returns
// (Owns waits while a start is in progress) until after the supervisor has
// reaped it. An owned zombie lingers only for the moment its waiting
// goroutine needs to collect it.
//
// # Concurrency
//
// Each component is driven by one goroutine of Run (Supervisor.supervise),
// which alone starts, stops and restarts it; a second goroutine per process
// waits for its exit. Status, Ready, Owns and Kill only take Supervisor.mu;
// Restart hands a request to the component's goroutine. Every wait on another
// process is bounded (StopTimeout, then a fixed time after SIGKILL); the only
// unbounded waits are for a dependency to run, or for Run's context to end.
package supervisor
