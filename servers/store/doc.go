// Package store is keepnet's storage server: the one place where every other
// component (ip, udp, tcp, pf, syscall...) keeps the state it needs to come
// back after a crash. State is key/value pairs in per-component namespaces
// ("ip", "tcp", ...). The store keeps everything in memory, bounded by
// [MaxBytes]; it never writes to disk. See DESIGN.md, "Recovery, component by
// component", and the NewtOS paper (§V): "If the storage process itself crashes
// and comes up, every other server has to store its state again."
//
// The server side is [Server] (cmd/store is a thin main over it); components
// use [Client], which does the re-storing for them.
//
// # Wire protocol
//
// One stream connection (a Unix socket, [DefaultPath]) per client. The client
// sends a request and waits for its reply; a connection carries one request
// at a time. Every frame is a big-endian uint32 length followed by that many
// bytes of body. All integers are big-endian.
//
//	request body
//	 0       8    9      10       12       16
//	+-------+----+------+--------+--------+-----------+-----+-------+
//	| id    | op | nsLen| keyLen | valLen | namespace | key | value |
//	| u64   | u8 | u8   | u16    | u32    |           |     |       |
//	+-------+----+------+--------+--------+-----------+-----+-------+
//
//	reply body
//	 0       8        16       17
//	+-------+--------+--------+---------+
//	| id    | epoch  | status | payload |
//	| u64   | u64    | u8     |         |
//	+-------+--------+--------+---------+
//
// The request body length must equal 16+nsLen+keyLen+valLen. Limits:
// namespace 1..[MaxNamespace] bytes, key 1..[MaxKey] bytes, value
// ≤ [MaxValue] bytes. A frame longer than the largest valid request makes
// the server close the connection without reading it; a well-framed but
// invalid request gets a reply with status BadRequest or TooLarge and the
// connection stays usable.
//
//	op  name    fields used        reply payload when status is OK
//	1   Hello   none               empty
//	2   Put     ns, key, value     empty
//	3   Get     ns, key            the value (status NotFound: empty)
//	4   Delete  ns, key            empty (deleting a missing key is OK)
//	5   List    ns                 u32 count, then count entries sorted by key:
//	                               u16 keyLen, u32 valLen, key, value
//
//	status  0 OK  1 NotFound  2 BadRequest  3 TooLarge  4 Full  5 Denied
//
// A reply with status BadRequest, TooLarge, Full or Denied carries a short
// human-readable message (≤ 256 bytes) as its payload. The reply's id is the
// request's; epoch is the store instance's id (below).
//
// Memory: each pair costs len(namespace)+len(key)+len(value)+64 bytes against
// the store's total of [MaxBytes]; a Put that would exceed it is refused with
// status Full and changes nothing. Because the per-pair charge exceeds the
// 6 bytes of List framing, a List reply is never larger than [MaxBytes] plus a
// small header, and a client never has to accept a bigger frame.
//
// # Restart protocol
//
// The store is the one component whose state is not saved anywhere: a
// restarted store is empty. It announces its rebirth through the epoch, a
// random non-zero 64-bit id chosen when the [Server] is created and carried in
// every reply.
//
//  1. A [Client] remembers, for every namespace it writes, the last value it
//     Put for each key, and forgets the keys it Deletes. It records the write
//     before sending it, in the order the operations reach the store.
//  2. On every new connection the client first sends Hello. If the epoch in
//     the reply is not the one of the store that already has its pairs
//     (always the case on the first connection, and after a store restart),
//     it replays every remembered pair with Put before doing anything else.
//  3. A write whose outcome is unknown (its connection broke or its context
//     expired before the reply) is marked unsure; on the next connection to
//     the same epoch the client re-sends it (Put of the remembered value, or
//     Delete). A write the store definitively refused (TooLarge, Full) is
//     forgotten again, so the client's memory matches what the store holds.
//  4. Every operation is idempotent, so after a broken connection the client
//     reconnects and retries the operation until its context or timeout
//     ([WithTimeout]) expires; dialling backs off between [WithBackoff]'s
//     bounds while the store is down. An operation never hangs longer than
//     its timeout.
//
// A restarted component is a new process with an empty client: it reads its
// state back with [Client.Restore], which is List plus "remember these pairs
// as mine", so they survive a later store restart too. A component reading
// another's namespace (pf reading tcp's connection states) uses
// [Client.List], which remembers nothing. Each namespace has a single writer,
// its component: two writers of one key could replay stale values over each
// other after a store restart.
//
// # Access control
//
// In the appliance the store knows its callers by their uid (SO_PEERCRED)
// and enforces the single writer and more: each component reads and
// writes only its own namespace and its own key of the shared "stats",
// within a quota, and secrets such as sshd's host key are readable only by
// their owner (and init). See [Access]. A connection idle for
// [IdleTimeout] is closed; the client reconnects when it next needs the
// store.
package store
