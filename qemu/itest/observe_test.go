package itest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"keepnet/boot/journal"
)

// TestOperatorView boots the keepnet stack, kills tcp, and reads what an
// operator would: `keepnet events` has the kill, the crash with its
// reason, the restart and tcp serving again with its recovery time;
// `keepnet logs ip` has ip's lines; `keepnet status` prints its tables.
func TestOperatorView(t *testing.T) {
	requireITest(t, false)
	port := freePort(t)
	a := boot(t, "", "--net", "user", "--fwd", fmt.Sprintf("tcp:%d:80", port))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if out, err := keepnet(ctx, "", "kill", "tcp", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill tcp: %v\n%s", err, out)
	}
	var ready journal.Event
	var evs []journal.Event
	for deadline := time.Now().Add(resumeWait); ready.Kind == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		evs = a.events(ctx)
		for _, e := range evs {
			if e.Component == "tcp" && e.Kind == journal.Ready && e.Generation == 2 {
				ready = e
			}
		}
	}
	if ready.Kind == "" {
		t.Fatalf("keepnet events never showed tcp generation 2 ready; events:\n%s", eventLines(evs))
	}
	t.Logf("tcp back %v after it was killed", ready.RecoveryTime())
	if ready.Recovery <= 0 || ready.Reason != "after signal: killed" {
		t.Errorf("tcp's ready event = %+v, want a recovery time after signal: killed", ready)
	}
	var kinds []string
	for _, e := range evs {
		if e.Component == "tcp" {
			kinds = append(kinds, fmt.Sprintf("%d %s %s", e.Generation, e.Kind, e.Reason))
		}
	}
	want := []string{"1 start ", "1 ready ", "1 signal SIGKILL requested", "1 crash signal: killed", "2 restart signal: killed", "2 ready after signal: killed"}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Errorf("tcp's events:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}

	out, err := keepnet(ctx, "", "events", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, "crash") || !strings.Contains(out, "signal: killed") {
		t.Errorf("keepnet events: %v, printed:\n%s\nwant the crash in the table", err, out)
	}
	out, err = keepnet(ctx, "", "logs", "ip", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, " ip: up on e1000.0") {
		t.Errorf("keepnet logs ip: %v, printed:\n%s\nwant ip's \"up on e1000.0\"", err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, " ip: ") {
			t.Errorf("keepnet logs ip printed a line not ip's: %q", l)
		}
	}
	out, err = keepnet(ctx, "", "logs", "tcp", "--ctl", a.ctl)
	t.Logf("keepnet logs tcp (%v):\n%s", err, out)
	out, err = keepnet(ctx, "", "status", "--ctl", a.ctl)
	if err != nil || !strings.Contains(out, "COMPONENT") || !strings.Contains(out, "e1000.0  82540EM") {
		t.Errorf("keepnet status: %v, printed:\n%s\nwant the component and NIC tables", err, out)
	}
	t.Logf("keepnet status:\n%s", out)
}

// events is the appliance's journal of events, through keepnet events --json.
func (a *appliance) events(ctx context.Context) []journal.Event {
	a.t.Helper()
	out, err := keepnetAt(ctx, a.bin, "", "events", "--json", "--ctl", a.ctl)
	if err != nil {
		a.t.Fatalf("keepnet events --json: %v\n%s", err, out)
	}
	var evs []journal.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e journal.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			a.t.Fatalf("keepnet events --json printed %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	return evs
}

func eventLines(evs []journal.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s %d %s %s | %s\n", e.Time.Format("15:04:05.000"), e.Component, e.Generation, e.Kind, e.Reason, e.Action)
	}
	return b.String()
}
