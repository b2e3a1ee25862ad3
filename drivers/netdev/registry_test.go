package netdev_test

import (
	"errors"
	"strings"
	"testing"

	"keepnet/drivers/netdev"
	"keepnet/drivers/netdev/netdevtest"
)

func family(name string, ids ...netdev.PCIID) netdev.Family {
	return netdev.Family{
		Name:    name,
		IDs:     ids,
		Quiesce: func(netdev.Regs, netdev.PCIID) error { return nil },
		Open: func(netdev.Regs, netdev.PCIID, netdev.Region, netdev.Platform) (netdev.Device, error) {
			return netdevtest.New(netdevtest.Config{}), nil
		},
	}
}

var (
	idA1 = netdev.PCIID{Vendor: 0x1234, Device: 0x00a1}
	idA2 = netdev.PCIID{Vendor: 0x1234, Device: 0x00a2}
	idB  = netdev.PCIID{Vendor: 0xabcd, Device: 0x000b}
)

func TestRegistryLookup(t *testing.T) {
	reg, err := netdev.NewRegistry(family("a", idA1, idA2), family("b", idB))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[netdev.PCIID]string{idA1: "a", idA2: "a", idB: "b"} {
		f, err := reg.Lookup(id)
		if err != nil || f.Name != want || !reg.Drives(id) {
			t.Errorf("Lookup(%s) = %q, %v (Drives %v); want %s", id, f.Name, err, reg.Drives(id), want)
		}
	}
}

// An ID no family drives is a clear error: it names the ID and what is
// driven, and it is ErrNoFamily.
func TestRegistryUnknownID(t *testing.T) {
	reg, err := netdev.NewRegistry(family("a", idA1))
	if err != nil {
		t.Fatal(err)
	}
	unknown := netdev.PCIID{Vendor: 0x8086, Device: 0x10d3}
	_, err = reg.Lookup(unknown)
	if !errors.Is(err, netdev.ErrNoFamily) {
		t.Fatalf("Lookup(%s) = %v, want ErrNoFamily", unknown, err)
	}
	for _, want := range []string{"8086:10d3", "a 1234:00a1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%s) error %q does not name %q", unknown, err, want)
		}
	}
	if reg.Drives(unknown) {
		t.Errorf("Drives(%s) = true", unknown)
	}
	var empty netdev.Registry
	if _, err := empty.Lookup(idA1); !errors.Is(err, netdev.ErrNoFamily) {
		t.Errorf("empty registry: Lookup = %v, want ErrNoFamily", err)
	}
}

// Two families never claim one ID, and a family must be usable.
func TestRegistryRefuses(t *testing.T) {
	noOpen := family("c", idB)
	noOpen.Open = nil
	for _, tc := range []struct {
		name string
		f    netdev.Family
		want string
	}{
		{"an ID already driven", family("c", idB, idA2), "1234:00a2 registered by a and by c"},
		{"no IDs", family("c"), "drives no PCI ID"},
		{"no name", family("", idB), "without a name"},
		{"no Open", noOpen, "no Open"},
		{"an untested ID it does not drive", withUntested(family("c", idB), idA1), "lists 1234:00a1 as untested"},
	} {
		reg, err := netdev.NewRegistry(family("a", idA1, idA2))
		if err != nil {
			t.Fatal(err)
		}
		err = reg.Register(tc.f)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Register = %v, want an error with %q", tc.name, err, tc.want)
		}
		if reg.Drives(idB) {
			t.Errorf("%s: the refused family's IDs were registered", tc.name)
		}
	}
}

func withUntested(f netdev.Family, ids ...netdev.PCIID) netdev.Family {
	f.Untested = map[netdev.PCIID]string{}
	for _, id := range ids {
		f.Untested[id] = "part " + id.String()
	}
	return f
}

// An untested ID is driven (it keeps its place among the NICs) and says
// what it is; tested ones and unknown ones are not untested.
func TestRegistryUntested(t *testing.T) {
	reg, err := netdev.NewRegistry(withUntested(family("a", idA1, idA2), idA2), family("b", idB))
	if err != nil {
		t.Fatal(err)
	}
	if part, ok := reg.Untested(idA2); !ok || part != "part 1234:00a2" || !reg.Drives(idA2) {
		t.Errorf("Untested(%s) = %q, %v (Drives %v); want its part, true, driven", idA2, part, ok, reg.Drives(idA2))
	}
	for _, id := range []netdev.PCIID{idA1, idB, {Vendor: 1, Device: 2}} {
		if _, ok := reg.Untested(id); ok {
			t.Errorf("Untested(%s) = true", id)
		}
	}
}

func TestPCIIDString(t *testing.T) {
	if got := (netdev.PCIID{Vendor: 0x8086, Device: 0x100e}).String(); got != "8086:100e" {
		t.Errorf("String() = %q, want 8086:100e", got)
	}
}
