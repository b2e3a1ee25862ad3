// Package sandbox is how little each keepnet component may do: the one
// table of who runs as whom (Lookup, NameOf), the capabilities each keeps,
// and the seccomp allow-list each installs on itself (Enter, Profile).
//
// Least privilege, in three steps at every start of a component:
//
//  1. Init's supervisor starts the process with the component's own uid
//     and gid, no supplementary groups, and as ambient capabilities only
//     those its row lists (boot/supervisor's Spec.UID, GID and Caps). Only
//     a NIC driver keeps any (see driverCaps).
//  2. The component's main calls Enter first thing: it sets no_new_privs
//     (nothing it executes can gain privileges) and, unless init says
//     seccomp is off (keepnet.seccomp=0, passed down as EnvSeccomp),
//     installs its seccomp filter on every thread. Go cannot run code
//     between fork and exec, so the child installs the filter itself; it
//     has run nothing but the Go runtime's start-up by then.
//  3. Files a component opens by path are made accessible to its uid by
//     init before the start: the store's socket directory, a driver's
//     /dev/uioN and sysfs files. Everything else (pools, channels, the
//     wiring socket) arrives as descriptors, which need no permission.
//
// Anyone can check the result: `keepnet status` shows each component's
// uid, effective capabilities and seccomp mode as /proc/PID/status has
// them (ReadProc).
package sandbox
