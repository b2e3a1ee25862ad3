package journal

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// clock is a fake time source: each reading is a second after the last.
func clock() func() time.Time {
	t := time.Unix(1e9, 0)
	return func() time.Time { t = t.Add(time.Second); return t }
}

func TestEventsKeepGenerationAndOrder(t *testing.T) {
	j := New(clock(), Rule{Prefix: "e1000.", Contains: "device reset", Kind: Reset})
	j.Add(Event{Component: "e1000.0", Kind: Start, Generation: 1, PID: 10})
	j.Add(Event{Component: "e1000.0", Kind: Crash, Generation: 1, Reason: "signal: killed", Action: "restarting"})
	j.Add(Event{Component: "e1000.0", Kind: Restart, Generation: 2, PID: 11})
	j.Log("e1000.0", []byte("e1000.0: transmit hang: device reset (1 so far)"))
	j.Log("ip", []byte("not a device reset of a driver"))

	got, next := j.Events(0, 1<<20)
	var kinds []string
	for _, e := range got {
		kinds = append(kinds, fmt.Sprintf("%d %s %s g%d", e.Seq, e.Component, e.Kind, e.Generation))
	}
	want := []string{"0 e1000.0 start g1", "1 e1000.0 crash g1", "2 e1000.0 restart g2", "3 e1000.0 device-reset g2"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("Events(0) (-want +got):\n%s", diff)
	}
	if next != 4 {
		t.Errorf("Events(0) next = %d, want 4", next)
	}
	if got, next := j.Events(next, 1<<20); len(got) != 0 || next != 4 {
		t.Errorf("Events(4) = %v, %d; want none, 4", got, next)
	}
}

func TestEventsRingDropsOldest(t *testing.T) {
	j := New(clock())
	for i := range MaxEvents + 10 {
		j.Add(Event{Component: "tcp", Kind: Crash, Reason: fmt.Sprint(i)})
	}
	got, next := j.Events(0, 1<<30)
	if len(got) != MaxEvents || got[0].Seq != 10 || next != MaxEvents+10 {
		t.Errorf("Events(0) = %d events from %d, next %d; want %d from 10, next %d", len(got), got[0].Seq, next, MaxEvents, MaxEvents+10)
	}
}

func TestEventsBudget(t *testing.T) {
	j := New(clock())
	for range 10 {
		j.Add(Event{Component: "tcp", Kind: Crash, Reason: strings.Repeat("x", 1000)})
	}
	var all []Event
	for since := uint64(0); ; {
		got, next := j.Events(since, 2500)
		if len(got) == 0 {
			break
		}
		if len(got) > 2 {
			t.Fatalf("Events(%d, 2500) gave %d events of 1000 bytes", since, len(got))
		}
		all, since = append(all, got...), next
	}
	if len(all) != 10 {
		t.Errorf("paging gave %d events, want 10", len(all))
	}
}

func TestLinesPerComponentMergedAndBounded(t *testing.T) {
	j := New(clock())
	for i := range MaxLines + 5 {
		j.Log("tcp", []byte(fmt.Sprintf("tcp %d", i)))
		if i%100 == 0 {
			j.Log("ip", []byte(fmt.Sprintf("ip %d", i)))
		}
	}
	tcp, _ := j.Lines("tcp", 0, 1<<20)
	if len(tcp) != MaxLines || tcp[0].Text != "tcp 5" {
		t.Errorf("Lines(tcp) = %d lines from %q, want %d from \"tcp 5\"", len(tcp), tcp[0].Text, MaxLines)
	}
	ip, next := j.Lines("ip", 0, 1<<20)
	if got := []string{ip[0].Text, ip[1].Text, ip[2].Text}; !cmp.Equal(got, []string{"ip 0", "ip 100", "ip 200"}) {
		t.Errorf("Lines(ip) = %q", got)
	}
	all, _ := j.Lines("", ip[1].Seq, 1<<20)
	if all[0].Text != "ip 100" || all[1].Text != "tcp 101" {
		t.Errorf("Lines(all, since ip 100) starts %q, %q", all[0].Text, all[1].Text)
	}
	j.Log("ip", []byte("later"))
	if more, _ := j.Lines("ip", next, 1<<20); len(more) != 1 || more[0].Text != "later" {
		t.Errorf("Lines(ip, %d) = %v, want the one later line", next, more)
	}
	if got := j.Components(); !cmp.Equal(got, []string{"ip", "tcp"}) {
		t.Errorf("Components() = %q", got)
	}
}

func TestLongLineCut(t *testing.T) {
	j := New(clock())
	j.Log("tcp", []byte(strings.Repeat("é", MaxLineBytes)))
	l, _ := j.Lines("tcp", 0, 1<<20)
	if n := len(l[0].Text); n > MaxLineBytes+len("…") || !strings.HasSuffix(l[0].Text, "…") {
		t.Errorf("a long line is kept as %d bytes ending %q", n, l[0].Text[n-4:])
	}
}

func TestNilJournal(t *testing.T) {
	var j *Journal
	j.Add(Event{Component: "tcp"})
	j.Log("tcp", []byte("x"))
}
