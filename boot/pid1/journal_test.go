package pid1

import (
	"log"
	"strings"
	"testing"

	"keepnet/boot/journal"
)

// Init's own lines reach the journal as "init"'s, without the prefix the
// console shows; a driver's device reset becomes an event.
func TestJournalLines(t *testing.T) {
	j := journal.New(nil, journalRules...)
	l := log.New(initLines{j}, "init: ", 0)
	l.Print("keepnet ready")
	j.Log("e1000.0", []byte("e1000.0: transmit hang: device reset (1 so far)"))
	j.Log("e1000.1", []byte("serving ip generation 2, after a device reset (3 so far)"))
	j.Log("ip", []byte("up on e1000.0"))

	a := &appliance{journal: j}
	lines, _, err := a.Logs("init", 0)
	if err != nil || len(lines) != 1 || lines[0].Text != "keepnet ready" {
		t.Errorf("Logs(init) = %v, %v; want the one line without its prefix", lines, err)
	}
	if _, _, err := a.Logs("tcp", 0); err == nil || !strings.Contains(err.Error(), `"tcp"`) {
		t.Errorf("Logs(tcp) without such a component: error %v, want one naming it", err)
	}
	evs, _ := a.Events(0)
	var got []string
	for _, e := range evs {
		got = append(got, e.Component+" "+string(e.Kind))
	}
	if strings.Join(got, ", ") != "e1000.0 device-reset, e1000.1 device-reset" {
		t.Errorf("events = %q, want a device reset of each driver", got)
	}
}
