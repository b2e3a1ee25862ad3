package wiring

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/kernel/channel"
	"keepnet/kernel/keep"
	"keepnet/kernel/pool"
)

// Setup is what a component receives when it joins: its identity, its own
// pools, its DMA regions, its kept memory and a channel to every neighbour
// that is present.
type Setup struct {
	Name       string
	Generation int
	Pools      map[string]*pool.Pool // owned, by name: the component allocates from them
	Regions    map[string]*pool.Pool // by name; owned, and the same memory in every generation
	Kept       map[string][]byte     // by name, mapped (kernel/keep): the same memory in every generation, as the last left it
	Peers      []*Peer               // in the order they arrived
}

// Peer is one generation of a neighbour, reached over a fresh channel.
//
// A Peer without a Port is a grant (TypeGrant): the pools of a component
// that is not a neighbour, which this one may read (and fill, if init
// made it a writer) when a neighbour forwards a reference into them.
type Peer struct {
	Name       string
	Generation int
	Port       *channel.Endpoint // nil: a grant
	Pools      []*pool.Pool      // the neighbour's pools, mapped (not owned)
}

// Grant reports whether p is a grant: pools, no channel.
func (p *Peer) Grant() bool { return p.Port == nil }

// Pool is the peer's pool with the given id (the Pool of a reference the
// peer sent), or nil: a reference into anything else is refused.
func (p *Peer) Pool(id uint32) *pool.Pool {
	for _, pl := range p.Pools {
		if pl.ID() == id {
			return pl
		}
	}
	return nil
}

// Close unmaps the peer's channel and pools.
func (p *Peer) Close() {
	if p.Port != nil {
		p.Port.Close()
	}
	for _, pl := range p.Pools {
		pl.Close()
	}
}

// Retire unmaps a superseded generation of the neighbour, as Close, and
// tells init that its pools are mapped here no more (release is the
// process's Conn.Release; nil in a test): the caller keeps no reference
// into them. Without it init could never free them.
func (p *Peer) Retire(release func(id uint32)) {
	ids := make([]uint32, 0, len(p.Pools))
	for _, pl := range p.Pools {
		ids = append(ids, pl.ID())
	}
	p.Close()
	if release == nil {
		return
	}
	for _, id := range ids {
		release(id)
	}
}

// Join says hello on c and collects the wiring until Ready. Call it once the
// component has done what must precede hello (a driver: its device reset).
func Join(c *Conn, timeout time.Duration) (*Setup, error) {
	if err := c.Send(Message{Type: TypeHello}); err != nil {
		return nil, err
	}
	s := &Setup{Pools: map[string]*pool.Pool{}, Regions: map[string]*pool.Pool{}, Kept: map[string][]byte{}}
	deadline := time.Now().Add(timeout)
	for {
		m, files, err := c.Recv(time.Until(deadline))
		if err != nil {
			return nil, fmt.Errorf("wire: joining: %w", err)
		}
		switch m.Type {
		case TypeWelcome:
			s.Name, s.Generation = m.Name, m.Generation
			closeAll(files)
		case TypePool:
			if m.Pool == nil || len(files) != 1 {
				closeAll(files)
				return nil, errors.New("wire: pool message without a pool")
			}
			p, err := pool.OpenOwned(m.Pool.ID, files[0], m.Pool.Bufs, m.Pool.BufSize)
			files[0].Close()
			if err != nil {
				return nil, err
			}
			s.Pools[m.Pool.Name] = p
		case TypeRegion:
			if m.Pool == nil || len(files) != 1 {
				closeAll(files)
				return nil, errors.New("wire: region message without its memory")
			}
			p, err := pool.OpenOwned(m.Pool.ID, files[0], m.Pool.Bufs, m.Pool.BufSize)
			files[0].Close()
			if err != nil {
				return nil, err
			}
			s.Regions[m.Name] = p
		case TypeKept:
			if len(files) != 1 {
				closeAll(files)
				return nil, fmt.Errorf("wire: kept memory %s with %d descriptors, want 1", m.Name, len(files))
			}
			b, err := keep.Map(files[0])
			files[0].Close()
			if err != nil {
				return nil, err
			}
			if len(b) != m.Size {
				keep.Unmap(b)
				return nil, fmt.Errorf("wire: kept memory %s is %d bytes, init says %d", m.Name, len(b), m.Size)
			}
			s.Kept[m.Name] = b
		case TypeChannel:
			p, err := openPeer(m, files)
			if err != nil {
				return nil, err
			}
			s.Peers = append(s.Peers, p)
		case TypeGrant:
			p, err := openGrant(m, files)
			if err != nil {
				return nil, err
			}
			s.Peers = append(s.Peers, p)
		case TypeReady:
			closeAll(files)
			return s, nil
		case TypePing, TypeHook, TypeArm:
			closeAll(files) // not before Ready; harmless if it ever were
		default:
			closeAll(files)
			return nil, fmt.Errorf("wire: unexpected %q while joining", m.Type)
		}
	}
}

// NextPeer waits (at most timeout) for a channel to a neighbour's new
// generation: the sign that it restarted, or started after this component.
// Pings and hooks on the way are skipped: a caller of NextPeer has no loop
// that answers them.
func NextPeer(c *Conn, timeout time.Duration) (*Peer, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if timeout < 0 {
			left = -1
		} else if left < 0 {
			left = 0
		}
		m, files, err := c.Recv(left)
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case TypeChannel:
			return openPeer(m, files)
		case TypePing, TypeHook, TypeArm:
			closeAll(files)
		default:
			closeAll(files)
			return nil, fmt.Errorf("wire: unexpected %q", m.Type)
		}
	}
}

// openGrant maps a grant's pools, one descriptor each, which it closes.
func openGrant(m Message, files []*os.File) (*Peer, error) {
	defer closeAll(files)
	if len(files) != len(m.Pools) {
		return nil, fmt.Errorf("wire: grant of %s's pools with %d descriptors, want %d", m.Peer, len(files), len(m.Pools))
	}
	p := &Peer{Name: m.Peer, Generation: m.Generation}
	if err := p.openPools(m.Pools, files); err != nil {
		return nil, err
	}
	return p, nil
}

// openPools maps pools, one of files each, into p.
func (p *Peer) openPools(infos []PoolInfo, files []*os.File) error {
	for i, info := range infos {
		pl, err := pool.Open(info.ID, files[i], info.Bufs, info.BufSize)
		if err != nil {
			p.Close()
			return err
		}
		p.Pools = append(p.Pools, pl)
	}
	return nil
}

// openPeer maps a channel message's descriptors: the channel's memory and
// eventfds, then one per peer pool. The descriptors are closed.
func openPeer(m Message, files []*os.File) (*Peer, error) {
	defer closeAll(files)
	if len(files) != 3+len(m.Pools) {
		return nil, fmt.Errorf("wire: channel to %s with %d descriptors, want %d", m.Peer, len(files), 3+len(m.Pools))
	}
	// The hub sends the memory and the wake-ups of side A then side B;
	// each side waits on its own and wakes the other's.
	mem, wakeA, wakeB := files[0], files[1], files[2]
	var (
		port *channel.Endpoint
		err  error
	)
	if m.Side == 0 {
		port, err = channel.Open(mem, wakeA, wakeB, channel.A)
	} else {
		port, err = channel.Open(mem, wakeB, wakeA, channel.B)
	}
	if err != nil {
		return nil, err
	}
	p := &Peer{Name: m.Peer, Generation: m.Generation, Port: port}
	if err := p.openPools(m.Pools, files[3:]); err != nil {
		return nil, err
	}
	return p, nil
}

// JoinInherited joins over the wiring socket a component inherits as FD:
// what every wired component does once it is ready to say hello.
func JoinInherited(timeout time.Duration) (*Conn, *Setup, error) {
	// Look before taking: in a process not started by init, descriptor 3
	// may be anything (even the Go runtime's epoll), and must not be closed.
	var st unix.Stat_t
	if err := unix.Fstat(FD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, nil, fmt.Errorf("wire: descriptor %d is not a wiring socket: not started by keepnet's init", FD)
	}
	f := os.NewFile(FD, "wire")
	conn, err := FromFile(f)
	f.Close() // FromFile holds its own duplicate
	if err != nil {
		return nil, nil, err
	}
	setup, err := Join(conn, timeout)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, setup, nil
}
