// Package udp is keepnet's UDP server: the sockets of the appliance between
// the SYSCALL server above and IP below, speaking servers/ops on both
// channels (DESIGN.md, "Processes in the guest").
//
// The protocol logic is [Table]: sockets named by the id SYSCALL chose,
// bind (explicit and ephemeral ports), connect, send and receive, input
// validation and demultiplexing, bounded receive queues, counters. It works
// on plain byte slices and talks to IP through servers/transport's Output
// (building each segment in a buffer it lends, so nothing is copied), so
// tests drive it on fakes. server.go makes it a servers/transport core
// (one method per socket operation); [Serve] runs it in the framework,
// which owns the wiring, the two channels, the pools and the store.
//
// # Sockets and ports
//
// A port is bound by at most one socket (there is no SO_REUSEADDR), to
// 0.0.0.0 or to our address. Ephemeral ports come from 49152-65535
// (RFC 6335), starting the search at a random port. A datagram goes to the
// socket bound to its destination port if that socket's address is 0.0.0.0
// or the destination, and, if the socket is connected, the source is its
// peer; otherwise nobody listens and IP answers with ICMP port unreachable.
// Such an answer coming back to a connected socket of ours is reported on
// its next receive or send as "connection refused", as Linux does
// (icmp.go).
//
// # Restart protocol
//
// What survives a crash of udp, and how (the NewtOS paper, §V "UDP"):
//
//  1. On every open, bind and connect (explicit, or the ephemeral bind a
//     first send or connect makes) the process writes the socket's [Record]
//     (id, bound address, connected peer) to the store, namespace "udp",
//     key the socket id in decimal; close and reset delete it. Writes go
//     through a goroutine so that a slow store never stalls the loop.
//  2. A restarted udp restores every record (store.Client.Restore, which
//     also makes the client replay them should the store restart later)
//     and recreates the sockets — same ids, bindings and peers — before it
//     joins the wiring and serves (servers/transport, step 1).
//  3. SYSCALL sees udp's new generation on a fresh channel and reissues
//     each socket's unfinished operation with a new id: a receive is posted
//     again, a send is sent again (a datagram may go out twice).
//  4. Not kept: receive queues and posted receives. A datagram that was
//     queued or in flight when udp crashed is lost — UDP may lose
//     datagrams anyway.
//
// When a neighbour restarts instead, the framework's steps 3 and 4
// (servers/transport) apply:
//
//   - ip: udp resubmits every OpOutput ip has not answered, with new ids,
//     and asks the new ip for its address. The datagrams ip delivered were
//     answered as soon as they were copied, so udp holds nothing in ip's
//     old "ip.up" pool; it unmaps it and tells init (wiring.TypeRelease).
//   - syscall: the receives its predecessor posted, and the sends held
//     until IP told our address, are dropped without a reply (nobody would
//     read it) and the old "syscall.io" pool is released. The sockets
//     stay: the applications adopt them through the new SYSCALL server
//     (OpAdopt) and reissue what had no reply; a reissued send may send a
//     datagram twice. OpCloseRange closes those of dead applications.
package udp
