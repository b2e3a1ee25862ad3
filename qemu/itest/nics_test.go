package itest

import (
	"context"
	"testing"
	"time"
)

// keepnet.nics picks the NICs by PCI address: given the two in reverse
// order, e1000.0 drives the second function and e1000.1 the first, which
// is on the namespace's link: the namespace reaches the appliance at
// e1000.1's address.
func TestNICsByPCI(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	// QEMU's functions: virtio-serial 00:02.0, then the NICs in --net
	// order: the tap 00:03.0, user networking 00:04.0. e1000.0 has
	// --ip, e1000.1 the second --net's ip=, the namespace's subnet.
	a := boot(t, n.Name, "--net", "tap:"+n.Tap, "--net", "user,ip="+n.GuestIP+"/24",
		"--ip", "10.78.0.1/24", "--gw", "10.78.0.2", "--append", "keepnet.nics=0000:00:04.0,0000:00:03.0")
	for name, want := range map[string]string{"e1000.0": "0000:00:04.0", "e1000.1": "0000:00:03.0"} {
		if got := a.waitStats(name, func(m map[string]any) bool { return m["PCI"] != nil }); got["PCI"] != want {
			t.Errorf("%s drives %v, want %s", name, got["PCI"], want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := n.exec(ctx, nil, "ping", "-c", "3", "-W", "5", n.GuestIP); err != nil {
		t.Errorf("ping %s (e1000.1, on the tap NIC at 0000:00:03.0): %v\n%s", n.GuestIP, err, out)
	}
}
