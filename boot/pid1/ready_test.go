package pid1

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// fakeComponents is the supervisor's readiness, set by the test.
type fakeComponents struct {
	mu       sync.Mutex
	notReady []string
	changed  chan struct{}
}

func newFakeComponents(notReady ...string) *fakeComponents {
	return &fakeComponents{notReady: notReady, changed: make(chan struct{})}
}

func (f *fakeComponents) NotReady() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.notReady)
}

func (f *fakeComponents) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// set changes what is not ready and wakes waiters, as the supervisor does.
func (f *fakeComponents) set(notReady ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notReady = notReady
	close(f.changed)
	f.changed = make(chan struct{})
}

// waitAsync runs r.wait in a goroutine; the channel gets its result.
func waitAsync(ctx context.Context, r *readiness) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- r.wait(ctx) }()
	return done
}

// notYet checks that a wait has not returned (it had a moment to).
func notYet(t *testing.T, done <-chan bool, why string) {
	t.Helper()
	select {
	case got := <-done:
		t.Fatalf("wait returned %v while %s", got, why)
	case <-time.After(20 * time.Millisecond):
	}
}

// returned checks that a wait returned want within a generous deadline.
func returned(t *testing.T, done <-chan bool, want bool) {
	t.Helper()
	select {
	case got := <-done:
		if got != want {
			t.Fatalf("wait = %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return within 5s")
	}
}

// The appliance is ready when every component serves and init's own
// conditions hold; waiting names what is missing, components first.
func TestReadinessWaitsForComponentsAndConditions(t *testing.T) {
	comps := newFakeComponents("httpd: running, not ready yet", "echo: starting")
	r := newReadiness(comps)
	r.set(netCondition, false, "eth0 is not operationally up yet (operstate down)")

	want := []string{"httpd: running, not ready yet", "echo: starting", "network: eth0 is not operationally up yet (operstate down)"}
	if got := r.waiting(); !slices.Equal(got, want) {
		t.Errorf("waiting() = %q, want %q", got, want)
	}
	done := waitAsync(context.Background(), r)
	notYet(t, done, "httpd, echo and the network are not ready")

	comps.set() // every component serves
	notYet(t, done, "the network is not usable")
	if got, want := r.waiting(), []string{"network: eth0 is not operationally up yet (operstate down)"}; !slices.Equal(got, want) {
		t.Errorf("waiting() = %q, want %q", got, want)
	}

	r.set(netCondition, true, "")
	returned(t, done, true)
	if got := r.waiting(); len(got) != 0 {
		t.Errorf("waiting() once ready = %q, want none", got)
	}
}

// A component that restarts makes the appliance unready until its new
// process serves; then it is ready again, not unready for ever.
func TestReadinessAfterRestart(t *testing.T) {
	comps := newFakeComponents()
	r := newReadiness(comps)
	returned(t, waitAsync(context.Background(), r), true)

	comps.set("tcp: running, not ready yet") // killed, restarted, not yet up
	if got, want := r.waiting(), []string{"tcp: running, not ready yet"}; !slices.Equal(got, want) {
		t.Errorf("waiting() during the restart = %q, want %q", got, want)
	}
	done := waitAsync(context.Background(), r)
	notYet(t, done, "tcp restarts")
	comps.set()
	returned(t, done, true)
}

func TestReadinessWaitEndsWithContext(t *testing.T) {
	r := newReadiness(newFakeComponents("httpd: backoff (exit status 1)"))
	ctx, cancel := context.WithCancel(context.Background())
	done := waitAsync(ctx, r)
	notYet(t, done, "httpd is in back-off")
	cancel()
	returned(t, done, false)
}

func TestReadinessWithoutComponentTable(t *testing.T) {
	r := newReadiness(nil)
	if got, want := r.waiting(), []string{"supervisor: the component table is invalid"}; !slices.Equal(got, want) {
		t.Errorf("waiting() = %q, want %q", got, want)
	}
}

// A condition set again to the same value wakes nobody; a new reason does.
func TestReadinessSetWakesOnChange(t *testing.T) {
	r := newReadiness(newFakeComponents())
	r.set("network", false, "eth0 is down")
	ch := r.changed
	r.set("network", false, "eth0 is down")
	select {
	case <-ch:
		t.Error("setting the same condition again woke waiters")
	default:
	}
	r.set("network", false, "eth0 has no address 10.0.0.2/24 yet")
	select {
	case <-ch:
	default:
		t.Error("a new reason did not wake waiters")
	}
	if got, want := r.waiting(), []string{"network: eth0 has no address 10.0.0.2/24 yet"}; !slices.Equal(got, want) {
		t.Errorf("waiting() = %q, want %q", got, want)
	}
}

func TestLinkUsable(t *testing.T) {
	dev := func(flags net.Flags, oper netlink.LinkOperState) netlink.Link {
		return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Flags: flags, OperState: oper}}
	}
	tests := []struct {
		link    netlink.Link
		wantOK  bool
		wantWhy string
	}{
		{dev(0, netlink.OperDown), false, "eth0 is down"},
		{dev(net.FlagUp, netlink.OperDown), false, "eth0 is not operationally up yet (operstate down)"},
		{dev(net.FlagUp, netlink.OperUnknown), false, "eth0 is not operationally up yet (operstate unknown)"},
		{dev(net.FlagUp|net.FlagRunning, netlink.OperUp), true, ""},
	}
	for _, tt := range tests {
		ok, why := linkUsable(tt.link, netip.Prefix{}) // no address to look for
		if ok != tt.wantOK || why != tt.wantWhy {
			t.Errorf("linkUsable(%+v) = %v, %q; want %v, %q", tt.link.Attrs(), ok, why, tt.wantOK, tt.wantWhy)
		}
	}
}
