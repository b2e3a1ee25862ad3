// Package transport is the process around every transport protocol of
// keepnet (udp, tcp; pf's verdicts next): the links to IP below and to the
// SYSCALL server above, each a kernel/channel channel, the requests IP has
// not answered, address and offload negotiation with IP, the "<name>.out"
// pool segments leave in, the loop (kernel/loop), the counters it
// publishes and the store journal of what survives a restart.
//
// A protocol is a core that implements the small [Protocol] interface: it
// takes the segments IP delivers ([Protocol.Deliver]), one method per
// socket operation of servers/ops ([Sockets], and [StreamSockets] for
// listen, accept, shutdown and socket options), and sends through the one [Output] every
// core uses. The framework calls the core from its single goroutine; the
// core answers SYSCALL through [Host.Reply], at once or once what the
// request waits for happens. A new transport is a core plus a thin main
// that calls [Serve].
//
// # IP <-> transport
//
// IP delivers a whole datagram (OpDeliver, servers/ops) with its source
// and destination addresses and the offset of the transport header, so a
// transport never parses IP: the framework checks the offset against the
// buffer and hands the core the segment. It answers every delivery as soon
// as the core returns (the core copies what it keeps), so nothing of IP's
// pools is held across a poll. Segments go down with OpOutput in a buffer
// of the transport's own pool; [Output.Buffer] lends one to a core that
// builds segments in place (udp: no copy), and [Output.Send] copies any
// other segment into one, holding segments in order while every buffer is
// with IP (tcp sends a whole window in one call).
//
// Pools: a message from a neighbour names a buffer of one of that
// neighbour's pools (IP's "ip.up" for OpDeliver, SYSCALL's "syscall.io"
// for payloads and receive buffers); the pool is found among the
// neighbour generation's pools by Ref.Pool, so a Ref of another generation
// or neighbour is never followed: one from IP is refused (StatusInvalid),
// one from SYSCALL stops the process (Server.SyscallBytes).
//
// Grants (Config.Grants, zero copy: servers/syscallsrv): init also hands
// the transport the pools of every application's current generation
// (wiring.TypeGrant), and SYSCALL forwards an application's own buffer.
// Such a Ref is followed into the grant of its pool; one into a pool
// neither SYSCALL's nor granted is answered StatusNoPool (the grant of a
// new application generation may come after SYSCALL's first request
// naming it), and SYSCALL sends a copy instead. When the next generation's
// grant comes, the requests into the old pools are answered
// ([PoolDropper]) before those are unmapped and released.
//
// # Restart protocol
//
// What the framework does for every transport; what each keeps of its
// sockets is in its own package doc.
//
//  1. Before it joins the wiring a new generation reads its records from
//     the store ([LoadRecords]: store.Client.Restore, so the client replays
//     them should the store restart later) and the core recreates what they
//     describe; records it cannot read are deleted and reported. While it
//     serves, the core saves and forgets records through a [StoreJournal],
//     one key per socket id in decimal ([RecordKey]) in the protocol's
//     namespace; writes go through a goroutine, so a slow store never
//     stalls the loop. The answer to a request that changed a record (udp's
//     open, bind, connect and close, tcp's listen and a listener's close)
//     waits until the store has the change ([Host.ReplyStored]): answered
//     before, a crash right after would take back a socket the application
//     was told it has (its adoption answered StatusNoSocket), or bring back
//     one it closed. Every other answer leaves at once.
//  2. Request ids to IP only grow, across generations too (a generation's
//     first id is its generation number shifted left by 40), so a reply
//     meant for a predecessor is never taken for one of ours.
//  3. A new generation of ip: every request the previous one left
//     unanswered (OpOutput, OpAddr, OpSource) is resubmitted to it with new ids
//     (kernel/channel.Outstanding), and it is asked for our address and
//     offloads (OpAddr, again every 100 ms while it answers with an
//     error). Deliveries were answered already, so the framework holds
//     nothing in the old generation's pools: it unmaps them and tells init
//     (wiring.TypeRelease).
//  4. A new generation of syscall: every request its predecessor left with
//     the core (posted receives, accepts, connects, held sends) is dropped
//     without a reply ([Protocol.DropRequests]: nobody would read it), its
//     unsent replies with it, and its pools are released. Sockets stay:
//     the applications adopt them through the new SYSCALL server
//     (OpAdopt) and reissue every request that had no reply, which the
//     core answers idempotently (servers/ops); the sockets of
//     applications that died meanwhile are closed with OpCloseRange.
//
// # Audit
//
// A core that can say where it keeps the requests it has not answered
// ([Auditor]; tcp and udp) is audited: the framework notes each request it
// hands the core and strikes it off at the reply, and every second looks
// for those older than two seconds in the core ([Auditor.Holds]). A
// request that is neither answered nor held was lost — a fault swallowed
// it, the process is alive and its application waits forever, which no
// crash or hang detection sees — and the framework stops the process, so
// that its restart answers it (step 4's resubmission, from the other
// side: SYSCALL resubmits whatever a dead transport left unanswered).
package transport
