package ip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/drivers/link"
	channel "keepnet/kernel/chan"
	"keepnet/kernel/pool"
	"keepnet/kernel/wire"
	"keepnet/servers/store"
)

// The IP server process: a Stack between one NIC driver (drivers/link over
// a kernel/chan channel) and the transport servers, with its configuration
// in the store. This file is the process; the protocol logic is the Stack.

// Pool names, as the component table gives them.
const (
	RxPool = "ip.rx" // receive buffers posted to the driver
	TxPool = "ip.tx" // frames handed to the driver
)

// ServerOptions configure the process.
type ServerOptions struct {
	Name   string // the component, "ip"
	Driver string // the driver component, "e1000.0"
	Config Config // from the kernel command line; the store's copy wins
	Store  *store.Client
	// RxPosted is how many receive buffers are kept with the driver.
	RxPosted int
}

// StatsNS is the store namespace components publish their counters in.
const StatsNS = "stats"

const (
	statsEvery  = time.Second
	tickEvery   = 100 * time.Millisecond
	joinTimeout = 10 * time.Second
	storeNS     = "ip"
	storeKey    = "config"
)

// server is the IP process's state. One goroutine runs it.
type server struct {
	o      ServerOptions
	rx, tx *pool.Pool
	stack  *Stack

	drv  *wire.Peer
	port *channel.Endpoint
	// out holds every request the driver has not answered: what is
	// resubmitted, with new ids, when the driver restarts.
	out   *channel.Outstanding
	queue []channel.Msg // requests the channel had no room for yet
	in    []channel.Msg

	mac     [6]byte
	haveMAC bool
	drops   uint64 // frames dropped for want of a driver or a TX buffer
	stats   *store.Publisher
	gen     int
}

// Stats is what the IP server publishes for `keepnet stats ip`.
type Stats struct {
	Generation       int
	Driver           string
	DriverGeneration int
	Outstanding      int // requests the driver has not answered
	NoDriverDrops    uint64
	RxPoolFree       int
	TxPoolFree       int
	Counters
}

// realClock is the wall clock the process gives its Stack.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Serve runs the IP server process until ctx ends.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.RxPosted == 0 {
		o.RxPosted = 512
	}
	cfg, from, err := loadConfig(ctx, o)
	if err != nil {
		return err
	}
	conn, setup, err := wire.JoinInherited(joinTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &server{o: o, rx: setup.Pools[RxPool], tx: setup.Pools[TxPool], in: make([]channel.Msg, 64), gen: setup.Generation}
	s.stats = store.NewPublisher(o.Store, StatsNS, o.Name)
	defer s.stats.Close()
	if s.rx == nil || s.tx == nil {
		return fmt.Errorf("ip: init sent no %s and %s pools", RxPool, TxPool)
	}
	s.out = channel.NewOutstanding(s.rx.Len()+s.tx.Len()+16, 1)
	log.Printf("address %v, gateway %v (configuration from %s), generation %d", cfg.Addr, cfg.Gateway, from, setup.Generation)

	watch, err := wire.Watch(conn)
	if err != nil {
		return err
	}
	defer watch.Close()
	defer conn.Close()
	for _, p := range setup.Peers {
		s.attach(p)
	}

	var next, nextStats time.Time
	for ctx.Err() == nil {
		select {
		case p, ok := <-watch.C:
			if !ok {
				return errors.New("ip: init closed the wiring socket")
			}
			s.attach(p)
		default:
		}
		if s.stack == nil && s.haveMAC {
			cfg.MAC = s.mac
			s.stack = New(cfg, s, realClock{}, nil)
			if err := s.stack.AnnounceGratuitousARP(); err != nil {
				log.Printf("gratuitous ARP: %v", err)
			}
			log.Printf("up on %s, MAC %x", o.Driver, s.mac)
			if err := conn.Send(wire.Message{Type: wire.TypeUp}); err != nil {
				log.Printf("wiring: %v", err)
			}
		}
		work := s.poll()
		if now := time.Now(); now.After(next) {
			if s.stack != nil {
				s.stack.Tick()
			}
			if now.After(nextStats) {
				s.publish()
				nextStats = now.Add(statsEvery)
			}
			next = now.Add(tickEvery)
		}
		if !work {
			s.sleep(watch, time.Until(next))
		}
	}
	return nil
}

// loadConfig takes the configuration from the store (a restarted server) or
// from the options (the first start), and makes sure the store has it.
func loadConfig(ctx context.Context, o ServerOptions) (Config, string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if b, ok, err := o.Store.Get(cctx, storeNS, storeKey); err != nil {
		log.Printf("store: %v; using the kernel command line", err)
	} else if ok {
		c, err := UnmarshalConfig(b)
		if err == nil {
			return c, "the store", nil
		}
		log.Printf("store: %v; using the kernel command line", err)
	}
	c := o.Config
	c.MAC = [6]byte{0x02} // a placeholder until the driver says; not stored
	if err := c.Validate(); err != nil {
		return Config{}, "", fmt.Errorf("ip: configuration: %w", err)
	}
	if err := o.Store.Put(cctx, storeNS, storeKey, MarshalConfig(c)); err != nil {
		log.Printf("store: saving the configuration: %v", err)
	}
	return c, "the kernel command line", nil
}

// attach starts talking to a (new generation of the) driver: everything the
// previous one left unanswered is resubmitted with new ids, so its late
// replies, if any, are ignored.
func (s *server) attach(p *wire.Peer) {
	if p.Name != s.o.Driver {
		log.Printf("ignoring a channel to %s", p.Name)
		p.Close()
		return
	}
	if s.drv != nil {
		s.drv.Close()
	}
	s.drv, s.port = p, p.Port
	s.queue = s.out.Resubmit()
	resent := len(s.queue)
	// Keep RxPosted receive buffers with the driver.
	for s.postedRX() < s.o.RxPosted {
		ref, ok := s.rx.Alloc()
		if !ok {
			break
		}
		s.request(link.OpRx, ref)
	}
	s.request(link.OpInfo, pool.Ref{})
	log.Printf("driver %s generation %d: %d requests resubmitted", p.Name, p.Generation, resent)
}

func (s *server) postedRX() int { return s.rx.Len() - s.rx.Available() }

// request queues a new request to the driver.
func (s *server) request(op uint16, ref pool.Ref) {
	m, err := s.out.Add(channel.Msg{Op: op, Ref: ref})
	if err != nil {
		log.Printf("driver request: %v", err)
		return
	}
	s.queue = append(s.queue, m)
}

// SendFrame is the Stack's Link: copy the frame into a TX buffer and hand it
// to the driver.
func (s *server) SendFrame(frame []byte) error {
	if s.port == nil {
		s.drops++
		return errors.New("ip: no driver")
	}
	ref, ok := s.tx.Alloc()
	if !ok {
		s.drops++
		return errors.New("ip: transmit pool exhausted")
	}
	buf, _ := s.tx.Bytes(ref)
	ref.Len = uint32(copy(buf, frame))
	s.request(link.OpTx, ref)
	return nil
}

// poll moves requests and replies once; it reports whether anything moved.
func (s *server) poll() bool {
	if s.port == nil {
		return false
	}
	work := false
	if len(s.queue) > 0 {
		n := s.port.Send(s.queue...)
		s.queue = s.queue[n:]
		work = n > 0
	}
	n := s.port.Recv(s.in)
	for _, r := range s.in[:n] {
		s.reply(r)
	}
	if len(s.queue) > 0 { // replies may have queued frames and reposts
		sent := s.port.Send(s.queue...)
		s.queue = s.queue[sent:]
	}
	return work || n > 0
}

func (s *server) reply(r channel.Msg) {
	req, ok := s.out.Complete(r)
	if !ok {
		return // a reply to a request already resubmitted elsewhere
	}
	switch req.Op {
	case link.OpRx:
		if r.Status == link.StatusOK && s.stack != nil {
			ref := req.Ref
			ref.Len = r.Ref.Len
			if frame, err := s.rx.Bytes(ref); err == nil {
				s.stack.HandleFrame(frame)
			}
		}
		// The Stack copied what it keeps: post the buffer again.
		s.request(link.OpRx, req.Ref)
	case link.OpTx:
		s.tx.Free(req.Ref)
	case link.OpInfo:
		s.mac, s.haveMAC = link.ArgToMAC(r.Arg[0]), true
	}
}

func (s *server) publish() {
	st := Stats{Generation: s.gen, Driver: s.o.Driver, Outstanding: s.out.Len(), NoDriverDrops: s.drops,
		RxPoolFree: s.rx.Available(), TxPoolFree: s.tx.Available()}
	if s.drv != nil {
		st.DriverGeneration = s.drv.Generation
	}
	if s.stack != nil {
		st.Counters = s.stack.Counters()
	}
	s.stats.Publish(st)
}

// sleep waits for the driver, the wiring or the next tick.
func (s *server) sleep(watch *wire.Watcher, d time.Duration) {
	fds := []unix.PollFd{{Fd: int32(watch.Fd()), Events: unix.POLLIN}}
	if s.port != nil {
		if s.port.Arm() {
			return
		}
		fds = append(fds, unix.PollFd{Fd: int32(s.port.Fd()), Events: unix.POLLIN})
	}
	unix.Poll(fds, max(int(d.Milliseconds()), 1))
	if s.port != nil {
		s.port.Disarm()
	}
	if fds[0].Revents&unix.POLLIN != 0 {
		watch.Drain()
	}
}
