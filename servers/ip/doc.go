// Package ip is the protocol logic of keepnet's IP server: the process
// between the NIC drivers (Ethernet frames) and the transport servers (udp,
// tcp). It answers ARP and resolves neighbours, validates and reassembles
// incoming IPv4, answers ping, hands every other protocol to its transport,
// routes, resolves and fragments what the transports send, and with
// several NICs forwards between them.
//
// Nothing here touches the OS. A [Stack] (one interface) is driven through three small
// interfaces — [Link] to the driver, [Transport] to each transport server,
// [Clock] for time — so tests run it on fakes, and the server process
// (cmd/ip, later) wires them to shared-memory channels and packet pools. The
// server loop is single-threaded: it calls [Stack.HandleFrame] for every
// received frame, [Stack.Output] for every transport request, and
// [Stack.Tick] periodically (every 100 ms or so); a Stack is not safe for
// concurrent use.
//
// Wire formats live in keepnet/servers/header; untrusted bytes are validated
// there once, on entry ([Stack.HandleFrame]), and this package works on the
// validated views.
//
// # What it implements
//
//   - Ethernet: frames to our MAC or broadcast; others are counted and dropped.
//   - ARP (RFC 826): replies to requests for our address; learns senders of
//     requests and replies addressed to us and refreshes known ones (the
//     RFC's merge); queues packets while resolving (bounded per neighbour and
//     in total), retries, ages entries; gratuitous ARP at start (RFC 5227
//     announcement).
//   - IPv4 input: version, IHL, lengths, header checksum (unless the
//     device verified it: HandleFrameChecked); packets for our
//     address, the limited broadcast and the subnet's directed broadcast.
//     TTL is not checked for what is ours: a host "MUST NOT discard a
//     datagram just because it was received with TTL less than 2"
//     (RFC 1122 §3.2.1.7).
//   - Reassembly (RFC 791, RFC 815): sorted fragment lists per (src, dst,
//     protocol, id); any overlap, duplicates included, discards the whole
//     datagram (the RFC 5722 policy, applied to IPv4); limits on time, on
//     memory across all datagrams and on their number (the oldest is
//     evicted); ICMP time exceeded (code 1) when a datagram whose first
//     fragment arrived times out (RFC 1122 §3.3.2).
//   - ICMP: echo reply to echo requests for our address (large ones
//     fragmented on output); protocol unreachable for protocols with no
//     transport; [Stack.SendUnreachable] for the transports (port
//     unreachable); no ICMP error about an ICMP error, a broadcast, or a
//     non-initial fragment (RFC 1122 §3.2.2). ICMP errors received
//     (unreachable, time exceeded, parameter problem) that quote a
//     datagram of ours go to the transport that sent it
//     ([ErrorTransport], servers/ops OpDeliverError).
//   - Path MTU discovery (RFC 1191, pmtu.go): TCP datagrams carry DF;
//     "fragmentation needed" lowers a bounded per-destination estimate
//     (floor [MinPathMTU], forgotten after [PathMTUAge]); offloaded TCP
//     segments are cut at it.
//   - Output: connected subnet directly, anything else through the default
//     gateway; a fresh IP ID per datagram; fragmentation to the MTU.
//   - Several NICs (forward.go, route.go): a [Router] joins one Stack per
//     interface; a routing [Table] (connected networks, static routes, a
//     default route; longest prefix match) routes what we send and, with
//     forwarding on, what we forward (TTL, RFC 1624 checksum update, ICMP
//     time exceeded, net unreachable and fragmentation needed, fragments).
//   - Filtering (the server, filter.go): with a packet filter configured,
//     every IPv4 and IPv6 datagram in and out waits for pf's verdict
//     (servers/pf/verdict); without one, nothing waits.
//
// # Recovery protocol
//
// The IP server keeps no state that matters across a crash but its
// configuration; ARP caches and reassemblies are rebuilt or retransmitted by
// the peers. The steps, of which this package implements the first (the
// configuration encoding) and the rest is the contract for the server and
// its neighbours (DESIGN.md, "Recovery, component by component"):
//
//  1. On first start the server takes each interface's [Config] from the
//     kernel command line and saves [MarshalConfig] of it in the store
//     (namespace "ip", key "config" for the first, "config.N" for the
//     others). A restarted server finds them there ([UnmarshalConfig]) and
//     ignores the command line, so an address changed at run time
//     survives. The static routes and forwarding come from its flags,
//     which init gives every generation alike.
//  2. The supervisor hands the new ip process fresh channels and a new RX
//     pool, which all drivers share. Each driver switches to the new pool safely: it resets its
//     device (which may still hold descriptors pointing into the old pool)
//     and refills its RX ring from the new one. The old pool stays mapped,
//     held by the supervisor, until every buffer in it is back.
//  3. tcp and udp learn of the restart (a new generation) and resubmit,
//     with new request ids, every request ip had not answered; replies to
//     old ids are ignored.
//  4. The new Stacks start with empty ARP and reassembly tables and each
//     sends a gratuitous ARP ([Stack.AnnounceGratuitousARP]) so neighbours
//     refresh their caches. The path MTU estimates are the exception:
//     the server keeps them in the store too (key "pmtu", "pmtu.N";
//     pmtustore.go) and a restarted one starts with them.
//
// A driver's restart is the driver's link alone: ip resubmits what that
// driver had not answered (frames to send, receive buffers) to its new
// generation; the other interfaces, and forwarding between them, go on.
package ip
