package itest

import (
	"context"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// TestRestartsFreeTheirPools: every restart of a component supersedes its
// pools, which init frees once each neighbour that mapped them says it no
// longer does (kernel/wiring, Release). ip and syscall used not to: the
// pools of every restarted tcp, udp and application stayed in huge pages
// until ip and syscall restarted, and after enough restarts the next ip
// got its receive and transmit pools outside huge pages, which its driver
// refuses for DMA (exit 78, not restarted): the appliance was dead for
// good, which the fault-injection campaign saw twice as "reboot needed".
// Here tcp, udp, echo and httpd restart 12 times each (more than the 64
// reserved huge pages would have held), then ip: the driver must still
// run and HTTP answer.
func TestRestartsFreeTheirPools(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	restart := func(comp string) {
		before, _ := a.status().Component(comp)
		if out, err := keepnet(ctx, "", "kill", comp, "--ctl", a.ctl); err != nil {
			t.Fatalf("keepnet kill %s: %v\n%s", comp, err, out)
		}
		a.waitComponent(comp, func(c ctl.Component) bool { return c.Generation > before.Generation && c.State == "running" })
	}
	for range 12 {
		for _, comp := range []string{"tcp", "udp", "echo", "httpd"} {
			restart(comp)
		}
	}
	restart("ip")
	out, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--retry", "5", "--retry-connrefused", "--max-time", "60",
		"-o", "/dev/null", "http://"+n.GuestIP+"/bytes?n=100000")
	c, _ := a.status().Component("e1000.0")
	if err != nil {
		t.Fatalf("HTTP after the restarts: %v\n%s\ne1000.0: %s, last exit %q", err, out, c.State, c.LastExit)
	}
	if c.State != "running" || c.Restarts != 0 {
		t.Errorf("e1000.0 after 48 restarts and one of ip: %s, %d restarts, last exit %q; want running, never restarted", c.State, c.Restarts, c.LastExit)
	}
}
