// Package socket is keepnet's socket API: the library an application links
// to get net.PacketConn, net.Conn and net.Listener values (UDP and TCP)
// whose traffic goes through keepnet's own stack instead of the Linux
// kernel's. A [Stack] speaks the socket operations of servers/ops to the
// SYSCALL server over one shared-memory channel (kernel/channel), with the
// payload in the application's own pool (kernel/pool); *Stack satisfies
// apps/netapi.Network, so an application written against that interface runs
// unchanged on either stack.
//
// Addresses are IPv4 or IPv6, as Go's net takes them: a listener on ":80"
// or "[::]:80" takes both families; Dial takes a numeric host or a name,
// resolved through this stack (dial.go: Resolver, the addresses tried in
// turn). An address of the other family than a "4" or "6" network names
// fails at once, before any request, with a *net.OpError around
// syscall.EAFNOSUPPORT, as Linux's does (a transport refusing one answers
// ops.StatusAFNoSupport, the same error).
//
// # Recovery: the SYSCALL server restarts
//
// The application never notices a SYSCALL restart, TCP connections
// included, apart from a datagram that may go out twice. Sockets live in
// the transports, under ids the SYSCALL server computes from the
// application, its generation and the application's socket id
// (servers/syscallsrv), so a new SYSCALL generation names them as its
// predecessor did. The steps:
//
//  1. init announces the new generation on the application's wiring
//     socket; [Open] watches it (wire.Watch) and hands the new channel to
//     the dispatcher ([Stack.PeerRestarted] does the same for a channel
//     built by hand). An announcement of an older or equal generation is
//     ignored.
//  2. The dispatcher switches to the new channel and closes the old one
//     (and unmaps the old peer's pools, telling init with wire.TypeRelease:
//     the library never holds a reference into them). Nothing more is read
//     from the old channel; every request it had not answered is taken back
//     from the table of outstanding requests. The buffers those requests
//     lent are the application's again.
//  3. Every socket that was open — UDP, TCP listener or TCP connection —
//     is adopted: one OpAdopt with its id, which the new server turns into
//     its record and forwards; the transport answers StatusOK if it holds
//     the socket. While a socket is being adopted its operations — the
//     unanswered ones taken back in step 2 and any the application issues
//     meanwhile — are parked, in order. A socket whose open was itself in
//     flight has its OpOpen reissued; one whose close was in flight is
//     adopted and closed again, its Close finished locally.
//  4. When the adoption is answered, the parked operations are sent under
//     fresh request ids, which only ever grow. The transport may have
//     acted on them already (its reply died with the old server), so each
//     is idempotent there (servers/ops): open, bind, connect and listen
//     repeated answer as the first did; an OpAccept names the same
//     connection again; every TCP OpSendTo carries the stream offset of
//     its first byte (stream.sendOff) and the transport acknowledges what
//     it had taken without queueing it again; every TCP OpRecvFrom carries
//     the offset received so far (stream.recvOff), and the transport keeps
//     the bytes it handed out until such an offset proves them received,
//     handing them out again to a new generation. No byte is duplicated or
//     lost. A UDP send that had no reply is sent again (the datagram may be
//     duplicated, which the paper prefers to losing it).
//  5. An adoption answered StatusError (the transport is not back yet) is
//     retried every 100 ms for up to 5 s; StatusNoSocket (the transport
//     lost the socket, e.g. a restart of tcp) makes it lost: a UDP socket's
//     or listener's operations fail with an error wrapping [ErrLost], a TCP
//     connection's with ECONNRESET (bytes already queued here are still
//     read first; Stats.Reset counts them).
//
// Operations blocked in the application (a ReadFrom, a Write waiting for a
// reply) just keep waiting across all this; they are completed by the
// replies on the new channel. A restart that happens during a restore starts
// the chain again.
//
// # Concurrency
//
// One dispatcher goroutine owns the channel's receiving side: it waits for
// replies (Port.Wait with a timeout, so that it also notices a new
// generation and Close), takes them in batches and completes the waiting
// operations through Go channels. Requests are sent by whichever goroutine
// makes them, under the Stack's lock, which keeps the channel's
// one-sender-at-a-time rule; what does not fit the ring waits in a queue that
// the dispatcher flushes as replies free room. No wait is unbounded: every
// one ends with a reply, a deadline (the socket's, or a context's, or a
// fixed bound for control operations), the socket's Close or the Stack's.
//
// # Receiving and sending
//
// Received data waits for the application in the library: each socket has
// a queue of completed receives, each holding a pool buffer, bounded at 64
// (fewer when the pool is small: a quarter of it, at least 4). A UDP
// socket keeps 4 OpRecvFrom posted, each with a pool buffer, for as long
// as its queue has room, whether or not datagrams come (there is no
// readiness receive for datagrams). A TCP connection posts buffers only
// while it has something to read (see TCP below). When a queue is full no
// receive is posted any more until the application reads: the transport's
// own queue then bounds and drops (UDP) or closes its window (TCP).
//
// A UDP write copies the payload into a pool buffer, sends it with
// OpSendTo and returns without waiting for the reply (write-behind, as
// sendto(2) returns once the kernel has the datagram): up to 4 sends are in
// flight per socket, and a fifth write waits, within its deadline, for the
// oldest one's reply. Waiting for its own reply made every datagram cost a
// round trip through SYSCALL and UDP, and an application that answers each
// datagram fell behind a stream of them. A send the transport refuses
// fails the next write on the socket, once. A send's buffer stays lent
// until its reply comes, whatever the writer's deadline. When
// the pool is empty a send waits (within its deadline) for a buffer to be
// freed. Receives never take the last buffers: a receive gets one only
// if that leaves a reserve (a quarter of the pool, at least 2) free, plus
// one for each send waiting, so received data that is not read
// never keeps a Write from going on, and a buffer freed while a Write
// waits is the Write's; a receive that went without is posted when buffers
// are back. Sends, in turn, never take the receives' reserve (receives
// holding fewer buffers than it may always take one): sends waiting for a
// peer that waits for this application's receives do not wedge both. The largest datagram is the pool's buffer size: a longer send
// fails with EMSGSIZE, a longer received datagram is truncated to it; a
// read into a short buffer copies what fits, as Go's net does on Linux.
//
// # TCP
//
// Listen opens a socket, binds it and listens (backlog 128); the
// [TCPListener] keeps 4 OpAccept posted, each naming a fresh socket id, and
// queues the connections they bring (at most 16, then no accept is posted
// until Accept takes one: the transport's backlog bounds the rest). Dial
// opens a socket and connects; the reply comes when the connection is
// established or failed (StatusRefused: ECONNREFUSED, StatusTimedOut:
// ETIMEDOUT); a context that ends first closes the socket.
//
// An idle [TCPConn] (the transport has not said it is readable) has one
// receive posted. While the pool can spare it, that receive has a buffer
// and waits (a standing receive): the transport answers it with the bytes
// when they come, so a request reaches the application with no further
// round trip. Standing receives hold at most a quarter of the pool, and
// count with the sends against the reserve above; the other idle
// connections, however many are open, lend no buffer: theirs is a
// readiness receive (an OpRecvFrom with no buffer, servers/ops), answered
// when bytes, the end of the stream or an error are there. Then the
// connection posts up to 2 OpRecvFrom with pool buffers and
// ops.FlagNoWait, as its queue and the reserve above allow; the transport
// answers them at once. A standing receive answered with less than its
// buffer leaves the connection idle (the transport had no more), one
// answered full makes it readable.
// Bytes join the queue (bounded in buffers: a reader that does not read
// stops the receives, and the transport's window does the rest) and keep
// the connection readable; an empty answer ("would block") makes it idle
// again, with a readiness receive. Read copies from the queue across
// buffers. FlagEOF ends the stream: Read returns io.EOF once the queue is
// empty. Write copies b into pool buffers, one buffer at a time, and sends
// each with OpSendTo, keeping up to four in flight (write-behind): it
// returns once all of b is handed over. The transport answers a send when
// its send buffer took all of it, so the order holds; a send that fails
// fails the next Write or CloseWrite (which waits for every send before
// OpShutdown). Close does not wait: the transport takes the sends still
// posted at OpClose before its FIN. A write deadline ends a wait for a
// buffer or for the oldest send. StatusReset and StatusTimedOut on any operation break the
// connection: later operations fail with ECONNRESET or ETIMEDOUT (queued
// bytes are still read first). CloseWrite is OpShutdown (later Writes fail
// with EPIPE); CloseRead is local only (Read returns io.EOF, arriving bytes
// are dropped). Errors come in *net.OpError as from Go's net; io.EOF comes
// bare.
//
// The socket options are net.TCPConn's methods with their meaning:
// SetNoDelay (on by default, as in Go), SetKeepAlive, SetKeepAlivePeriod,
// SetKeepAliveConfig, SetLinger, SetReadBuffer, SetWriteBuffer. Each is an
// OpSetOption the transport answers at once; the option lives with the
// connection there (servers/tcp keeps it across its restarts), and one
// whose answer died with a SYSCALL server is reissued like any request.
// Keep-alive that gives up fails the connection with ETIMEDOUT. With a
// positive linger Close waits for OpClose's answer, which the transport
// holds until the peer acknowledged everything or the linger passed.
//
// # Where the code is
//
// stack.go is the [Stack]: the channel, the dispatcher that matches replies
// to requests, and the adoption of sockets on a new generation. sock.go is the socket record shared by
// both protocols (sock, with the TCP-only state in its embedded stream) and
// the paths they share: establish (open, then bind, listen or connect),
// call, submitSend and awaitSend, closeSock. addr.go parses and checks
// addresses (IPv4 and IPv6; dial.go resolves names). udp.go is [UDPConn], tcp.go [TCPConn] and
// [TCPListener]; errors.go maps statuses to errno, deadline.go the
// deadlines.
package socket
