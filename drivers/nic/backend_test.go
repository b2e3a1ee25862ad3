package nic

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"keepnet/drivers/link"
	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
	"keepnet/drivers/pci"
	"keepnet/kernel/pool"
)

// fakeIOMMU records the mappings a container would hold.
type fakeIOMMU struct {
	maps map[uint64]fakeMap // by IOVA
	log  []string
}

type fakeMap struct {
	size  uint64
	write bool
}

func (f *fakeIOMMU) MapDMA(mem []byte, iova uint64, write bool) error {
	if f.maps == nil {
		f.maps = map[uint64]fakeMap{}
	}
	if _, ok := f.maps[iova]; ok {
		return fmt.Errorf("IOVA %#x mapped twice", iova)
	}
	f.maps[iova] = fakeMap{uint64(len(mem)), write}
	f.log = append(f.log, fmt.Sprintf("map %#x", iova))
	return nil
}

func (f *fakeIOMMU) UnmapDMA(iova, size uint64) error {
	if m, ok := f.maps[iova]; !ok || m.size != size {
		return fmt.Errorf("unmapping %#x+%d: not mapped so", iova, size)
	}
	delete(f.maps, iova)
	f.log = append(f.log, fmt.Sprintf("unmap %#x", iova))
	return nil
}

// Each pool is mapped whole at its own IOVA, above physical memory; a
// buffer's device address is its pool's IOVA plus its offset; the device
// writes only into pools this process may write; an unmapped pool's
// buffers do not translate.
func TestIOMMUMaps(t *testing.T) {
	rx, err := pool.Create(1, 64, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	txFd, err := pool.Create(2, 64, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer txFd.Close()
	ro, err := pool.ReopenReadOnly(txFd.Fd())
	if err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Open(2, ro, 64, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	f := &fakeIOMMU{}
	m := newIOMMUMaps(f, pci.NewIOVAs())
	for _, p := range []*pool.Pool{rx, tx, rx} { // mapping twice is once
		if err := m.Map(p); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.maps) != 2 {
		t.Fatalf("mappings %v, want one per pool", f.maps)
	}
	ref, _ := rx.Alloc()
	mem, iova, err := m.Translate(rx, ref)
	if err != nil || len(mem) != int(ref.Len) {
		t.Fatalf("Translate = %d bytes, %v", len(mem), err)
	}
	base := m.pools[rx]
	if iova != base+uint64(ref.Off) || base < pci.DefaultIOVABase || f.maps[base].size != uint64(len(rx.Mapping())) {
		t.Errorf("buffer at offset %#x has IOVA %#x; pool at %#x (%+v)", ref.Off, iova, base, f.maps[base])
	}
	if !f.maps[m.pools[rx]].write || f.maps[m.pools[tx]].write {
		t.Errorf("device may write: rx %v, tx %v; want rx only", f.maps[m.pools[rx]].write, f.maps[m.pools[tx]].write)
	}
	if err := m.Unmap(rx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Translate(rx, ref); !errors.Is(err, ErrNotMapped) {
		t.Errorf("Translate after Unmap: %v, want ErrNotMapped", err)
	}
	if err := m.Map(rx); err != nil || m.pools[rx] != base {
		t.Errorf("mapped again at %#x (%v), want the freed IOVA %#x", m.pools[rx], err, base)
	}
}

// A probe (the dma-escape hook's buffer) waits for room on the full ring,
// goes ahead of IP's waiting buffers, and comes back to its own callback:
// IP never hears of it.
func TestPostProbe(t *testing.T) {
	b := newBench(t, netdevtest.Config{RxRing: 4})
	var rx []uint64
	for i := 0; i < 6; i++ { // 4 on the ring, 2 waiting
		rx = append(rx, b.postRX())
	}
	if reps := b.replies(); len(reps) != 0 {
		t.Fatalf("replies to buffers posted: %v", reps)
	}
	scratch := make([]byte, 2048)
	var got [][]byte
	if !b.drv.PostProbe(netdev.Buffer{Mem: scratch, Addr: 0xdead000}, func(f []byte) { got = append(got, f) }) {
		t.Fatal("PostProbe refused")
	}
	if b.drv.PostProbe(netdev.Buffer{Mem: scratch}, nil) {
		t.Error("a second PostProbe taken while one is out")
	}
	// Five frames: four fill IP's buffers on the ring, the fifth the probe
	// (which took the first free slot, ahead of IP's two waiting).
	for i := 0; i < 5; i++ {
		b.dev.Deliver(frame(fmt.Sprintf("in-%d", i)), false)
		b.drv.Poll()
	}
	reps := b.replies()
	var ids []uint64
	for _, r := range reps {
		if link.StatusOf(r) != link.StatusOK {
			t.Errorf("reply %+v", r)
		}
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != fmt.Sprint(rx[:4]) {
		t.Errorf("IP got replies %v, want %v (the probe's frame is not IP's)", ids, rx[:4])
	}
	if len(got) != 1 || !bytes.Equal(got[0], frame("in-4")) {
		t.Errorf("probe got %q, want the fifth frame", got)
	}
	// Free again; a reset gives a probe back unfilled.
	if !b.drv.PostProbe(netdev.Buffer{Mem: scratch}, func(f []byte) { got = append(got, f) }) {
		t.Fatal("PostProbe refused after the first came back")
	}
	b.adopt(2)
	if len(got) != 2 || got[1] != nil {
		t.Errorf("after a reset the probe got %q, want nil", got[1:])
	}
}
