package pid1

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/journal"
)

// journalRules make events of what components only say: a driver's device
// reset, by its watchdog ("transmit hang: device reset") or for a new ip
// generation ("after a device reset"), both printed by drivers/nic.
var journalRules = []journal.Rule{
	{Prefix: "e1000.", Contains: "device reset", Kind: journal.Reset},
}

// initLines keeps init's own log lines in the journal, as component
// "init" (without the "init: " the console shows).
type initLines struct{ j *journal.Journal }

func (w initLines) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		line = bytes.TrimSuffix(line, []byte("\n"))
		w.j.Log("init", bytes.TrimPrefix(line, []byte("init: ")))
	}
	return len(p), nil
}

// Events answers the control verb events from the journal.
func (a *appliance) Events(since uint64) ([]journal.Event, uint64) {
	return a.journal.Events(since, ctl.ReplyBudget)
}

// Logs answers the control verb logs from the journal: a component of the
// table, the supervisor, init, or (no name) all of them.
func (a *appliance) Logs(name string, since uint64) ([]journal.Line, uint64, error) {
	if name != "" && !slices.Contains(a.logNames(), name) {
		return nil, since, fmt.Errorf("unknown component %q (known: init, supervisor and the components of keepnet status)", name)
	}
	lines, next := a.journal.Lines(name, since, ctl.ReplyBudget)
	return lines, next, nil
}

// logNames are the names whose lines the journal may hold.
func (a *appliance) logNames() []string {
	names := []string{"init", "supervisor"}
	if a.sup != nil {
		for _, c := range a.sup.Status() {
			names = append(names, c.Name)
		}
	}
	return names
}

// uptimeMillis is how long a process started at started has run; 0 if
// none runs.
func uptimeMillis(started time.Time) int64 {
	if started.IsZero() {
		return 0
	}
	return time.Since(started).Milliseconds()
}
