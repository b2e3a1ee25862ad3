package hub

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/kernel/channel"
	"keepnet/kernel/wiring"
)

// Two components joined through the real factory: a packet written into
// ip's pool and sent as a reference over the channel reads back at the
// driver through its own mapping, and the driver's rings region is a pool
// it owns.
func TestJoinOverSharedMemory(t *testing.T) {
	h, err := New([]Node{
		{Name: "ip", Peers: []string{"drv"}, Pools: []PoolSpec{{Name: "ip.rx", Bufs: 64, BufSize: 2048}}},
		{Name: "drv", Peers: []string{"ip"}, Regions: []RegionSpec{{Name: "drv.rings", Bufs: 2, BufSize: 4096}}},
	}, Shared(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ipConn, ip := joinAs(t, h, "ip")
	_, drv := joinAs(t, h, "drv")
	if ip.Name != "ip" || ip.Generation != 1 || len(ip.Pools) != 1 || len(ip.Peers) != 0 {
		t.Fatalf("ip setup = %+v, want generation 1, one pool, no peer yet", ip)
	}
	if len(drv.Peers) != 1 || drv.Peers[0].Name != "ip" || len(drv.Peers[0].Pools) != 1 || drv.Regions["drv.rings"] == nil {
		t.Fatalf("driver setup = %+v, want ip as peer with its pool and the rings region", drv)
	}
	if _, ok := drv.Regions["drv.rings"].Alloc(); !ok {
		t.Error("the driver cannot allocate from its own rings region")
	}
	peer, err := wiring.NextPeer(ipConn, 2*time.Second)
	if err != nil || peer.Name != "drv" {
		t.Fatalf("ip's NextPeer = %+v, %v; want the driver", peer, err)
	}

	rx := ip.Pools["ip.rx"]
	ref, ok := rx.Alloc()
	if !ok {
		t.Fatal("Alloc from ip's pool failed")
	}
	b, _ := rx.Bytes(ref)
	copy(b, "a frame, by reference")
	ref.Len = uint32(len("a frame, by reference"))
	if n := peer.Port.Send(channel.Msg{ID: 1, Op: 2, Ref: ref}); n != 1 {
		t.Fatal("Send failed")
	}
	dp := drv.Peers[0]
	if err := dp.Port.Wait(time.Minute); err != nil {
		t.Fatal(err)
	}
	var msgs [4]channel.Msg
	if n := dp.Port.Recv(msgs[:]); n != 1 {
		t.Fatalf("Recv = %d messages, want 1", n)
	}
	got, err := dp.Pools[0].Bytes(msgs[0].Ref)
	if err != nil || string(got) != "a frame, by reference" {
		t.Errorf("driver reads %q, %v through its mapping; want the bytes ip wrote", got, err)
	}
}

// Only a pool's owner and its Writers map it writable: the driver fills
// ip's receive buffers, tcp only reads them, and tcp's descriptor of ip's
// receive pool cannot be mapped writable.
func TestReadersGetReadOnlyPools(t *testing.T) {
	h, err := New([]Node{
		{Name: "ip", Peers: []string{"drv", "tcp"}, Pools: []PoolSpec{
			{Name: "ip.rx", Bufs: 8, BufSize: 2048, Writers: []string{"drv"}},
			{Name: "ip.up", Bufs: 8, BufSize: 2048},
		}},
		{Name: "drv", Peers: []string{"ip"}},
		{Name: "tcp", Peers: []string{"ip"}},
	}, Shared(), func(string, ...any) {}) // the hub's goroutines outlive the test
	if err != nil {
		t.Fatal(err)
	}
	setups := map[string]*wiring.Setup{}
	for _, name := range []string{"ip", "drv", "tcp"} {
		_, setups[name] = joinAs(t, h, name)
	}
	for _, p := range setups["ip"].Pools {
		if !p.Writable() {
			t.Errorf("ip's own pool %d is read-only", p.ID())
		}
	}
	writable := func(name string) map[uint32]bool {
		w := map[uint32]bool{}
		for _, p := range setups[name].Peers[0].Pools {
			w[p.ID()] = p.Writable()
		}
		return w
	}
	rx, up := setups["ip"].Pools["ip.rx"].ID(), setups["ip"].Pools["ip.up"].ID()
	for _, c := range []struct {
		name   string
		pool   uint32
		writer bool
	}{{"drv", rx, true}, {"drv", up, false}, {"tcp", rx, false}, {"tcp", up, false}} {
		if got := writable(c.name)[c.pool]; got != c.writer {
			t.Errorf("%s maps ip's pool %d writable: %v, want %v", c.name, c.pool, got, c.writer)
		}
	}
	for _, p := range setups["tcp"].Peers[0].Pools {
		m, err := unix.Mmap(int(p.Fd().Fd()), 0, len(p.Mapping()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err == nil {
			unix.Munmap(m)
		}
		if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
			t.Errorf("tcp maps ip's pool %d with PROT_WRITE, MAP_SHARED: %v, want EACCES or EPERM", p.ID(), err)
		}
	}
}

// A writer must be a neighbour of the pool's owner: nobody else gets it.
func TestWriterMustBeANeighbour(t *testing.T) {
	_, err := New([]Node{
		{Name: "ip", Peers: []string{"drv"}, Pools: []PoolSpec{{Name: "ip.rx", Bufs: 8, BufSize: 2048, Writers: []string{"tcp"}}}},
		{Name: "drv", Peers: []string{"ip"}},
		{Name: "tcp"},
	}, Shared(), t.Logf)
	if err == nil {
		t.Error("New accepted a writer that is not the owner's neighbour")
	}
}
