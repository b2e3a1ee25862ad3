package itest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

// The tests check that the appliance works again after a kill; how soon is
// BenchmarkRecovery's figure. These are the ways of waiting for it and of
// measuring it, shared by both.

// resumeWait is how long a test waits for a service to work again after a
// kill. A restart that takes a tenth of a second on a quiet host takes
// seconds under TCG on a loaded one; only a hang takes this long.
const resumeWait = 2 * time.Minute

// resumePings is how many replies pingResumes waits for.
const resumePings = 20

// pingResumes pings the appliance every 50 ms until resumePings replies
// came, for at most resumeWait. (Late replies may come together: the
// count can pass resumePings.)
func (n *netns) pingResumes(t testing.TB) pingStats {
	t.Helper()
	return n.ping(t, resumeWait+time.Minute, "-c", strconv.Itoa(resumePings), "-i", "0.05", "-w", strconv.Itoa(int(resumeWait.Seconds())))
}

// restartsOf returns each component's restart count. A test that checks
// that nothing restarted during what it did compares with the counts from
// before: on a loaded host an app may time out and restart while the stack
// boots, which is not what the test is about.
func restartsOf(st ctl.Status) map[string]int {
	m := map[string]int{}
	for _, c := range st.Components {
		m[c.Name] = c.Restarts
	}
	return m
}

// kill has the supervisor kill a component and returns when it did.
func (a *appliance) kill(component string) time.Time {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := keepnet(ctx, "", "kill", component, "--ctl", a.ctl); err != nil {
		a.t.Fatalf("keepnet kill %s: %v\n%s", component, err, out)
	}
	return time.Now()
}

// udpOutage runs a UDP echo stream to port 7 (udpStream: a datagram every
// 5 ms for 7 s) and kills component two seconds in. It returns the
// stream's result: sent, received, refused (ICMP port unreachable) and
// gap_ms, the longest silence between two echoes (the stream stops
// listening after 3 s of silence).
func (n *netns) udpOutage(t testing.TB, a *appliance, component string) map[string]string {
	t.Helper()
	done := make(chan map[string]string, 1)
	go func() { done <- n.udpHelper(t, 2*time.Minute, "stream", n.GuestIP+":7", 1400) }()
	time.Sleep(2 * time.Second)
	a.kill(component)
	return <-done
}

// udpEchoResumes sends rounds of 20 datagrams to the echo port, one at a
// time with 3 s for each echo (udpEchoSizes), until a round loses none or
// resumeWait has passed, and returns the last round's result.
func (n *netns) udpEchoResumes(t testing.TB) map[string]string {
	t.Helper()
	deadline := time.Now().Add(resumeWait)
	for {
		r := n.udpHelper(t, 2*time.Minute, "echo", n.GuestIP+":7", 20)
		if r["lost"] == "0" && r["bad"] == "0" || time.Now().After(deadline) {
			return r
		}
	}
}

// acceptAfterKill kills tcp and returns how long after the kill the first
// new connection to the appliance's HTTP port carried a request, curl
// trying again and again, each try given try; it gives up within after the
// kill.
func (n *netns) acceptAfterKill(t testing.TB, a *appliance, try, within time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within+try+30*time.Second)
	defer cancel()
	killed := a.kill("tcp")
	for {
		_, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", strconv.FormatFloat(try.Seconds(), 'f', -1, 64),
			"-o", "/dev/null", "http://"+n.GuestIP+"/bytes?n=10")
		d := time.Since(killed)
		if err == nil {
			return d, nil
		}
		if d > within {
			return d, fmt.Errorf("no connection accepted within %v of killing tcp: %v", within, err)
		}
	}
}

// storeBack kills the store and returns how long after the kill the
// supervisor reported it running again as a new process, and its status
// then; it gives up after resumeWait.
func (a *appliance) storeBack() (time.Duration, ctl.Component, error) {
	a.t.Helper()
	old, _ := a.status().Component("store")
	killed := a.kill("store")
	for {
		c, _ := a.status().Component("store")
		d := time.Since(killed)
		if c.State == "running" && c.Restarts == old.Restarts+1 && c.PID != old.PID {
			return d, c, nil
		}
		if d > resumeWait {
			return d, c, fmt.Errorf("store not running again with restarts=%d within %v of the kill: %+v", old.Restarts+1, resumeWait, c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
