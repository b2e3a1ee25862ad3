// Package relay is a userspace link impairment relay: it sits between a QEMU
// guest's NIC and a tap device and drops, duplicates, reorders, delays and
// rate-limits the Ethernet frames in each direction, from a seed, because
// the host kernel has no netem qdisc. It works the same for either guest
// stack: it only sees Ethernet frames.
//
//	guest NIC ── QEMU -netdev stream ── Unix socket ──┐
//	                                                  relay (out: guest→tap, in: tap→guest)
//	namespace kernel ── tap (IFF_TAP|IFF_NO_PI) ──────┘
//
// Start reading at Relay.Run: one thread sleeps in a single ppoll on the
// QEMU socket and the tap, and on each wakeup each direction ("pump") reads
// a batch, asks its Impairer what to do with each frame, and writes what is
// due. Without impairment the relay must not cost the guest throughput
// (TestTCPThroughRelay holds it under 10%) on a host whose cores QEMU's
// vCPUs already keep busy, so it wakes as little as it can: it runs
// SCHED_BATCH, so a frame from QEMU does not preempt the vCPU that sent it,
// and it sleeps in a raw system call the Go runtime does not see, so no
// runtime thread wakes with it. The parts:
//
//   - stream.go: QEMU's stream framing (4-byte big-endian length, frame);
//     StreamReader decodes many frames per read and validates each length
//     before slicing.
//   - impair.go: Impairer, the pure decision component: frames and times in,
//     frames and due times out; no I/O, no clock, a seeded math/rand/v2
//     source. Same seed and same arrivals: same run.
//   - relay.go: the loop and the pumps. A frame that is sent at once goes
//     out of the buffer it was read into (no copy, no allocation); only
//     frames that must wait are copied into pooled buffers. Waiting frames
//     are released when ppoll times out at the next due time, so a delay in
//     one direction never blocks the other; a direction whose destination
//     would block stops reading until it drains, and the other goes on.
//   - vnet.go: the tap's offloads. OpenTap asks for virtio_net_hdr and TSO,
//     so the namespace's kernel hands over TCP segments of up to 64 KiB and
//     checksums to finish; the relay does what a NIC would (cuts the
//     segments, fills in checksums) before impairing each wire frame.
//   - mtu.go: a link MTU in the middle (Config.MTU): datagrams over it are
//     fragmented, or with DF dropped and answered with ICMP
//     "fragmentation needed" as a router would, or dropped silently (a
//     PMTU black hole, Config.BlackHole).
//   - serve.go: getting QEMU connections (Listen/Accepting, Dialing) and
//     Serve, which relays one connection after another.
//   - tap_linux.go: OpenTap, attaching to an existing tap.
//   - cli.go: the keepnet-relay command (cmd/keepnet-relay is its main).
//
// # Connecting to QEMU (QEMU ≥ 7.2)
//
// Two ways, both tested with QEMU 7.2:
//
//   - The relay listens (Listen, keepnet-relay -qemu PATH) and QEMU connects:
//     -netdev stream,id=n0,server=off,addr.type=unix,addr.path=PATH. Start the
//     relay first: QEMU 7.2 tries once, does not fail when nobody listens,
//     and never retries. A restarted QEMU connects again and is served.
//   - QEMU listens, -netdev stream,id=n0,server=on,addr.type=unix,addr.path=PATH,
//     and the relay connects (Dialing, keepnet-relay -qemu-dial PATH),
//     retrying until QEMU is there. QEMU 7.2 listens again after its client
//     goes, so this is the robust choice when the relay may restart under a
//     running guest.
//
// # Recovery
//
// The relay keeps no state worth restoring beyond its counters and seed.
//  1. QEMU goes away (EOF): Run returns nil; Serve waits for the next
//     connection. Frames still waiting in an Impairer are sent on the next
//     connection, so a reconnect continues the same seeded run.
//  2. QEMU breaks the framing (a length of 0 or above MaxFrame): nothing
//     after it can be trusted; the connection is closed and the next one
//     served.
//  3. The tap fails (not EIO/EINVAL on one frame, which is counted in Errors
//     and skipped, but the device itself): Serve returns the error and the
//     command exits 1; its supervisor restarts it.
//  4. The relay restarts: in -qemu-dial mode it reconnects to the running
//     QEMU; in -qemu mode the guest's link stays down until QEMU restarts.
package relay
