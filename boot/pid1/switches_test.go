package pid1

import (
	"os"
	"testing"
	"time"

	"keepnet/boot/ctl"
)

func TestAddSwitches(t *testing.T) {
	status := "Name:\tip\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n"
	var sw ctl.Switches
	addSwitches(&sw, status)
	addSwitches(&sw, status)
	if sw != (ctl.Switches{Voluntary: 2400, Involuntary: 68}) {
		t.Fatalf("two threads' switches: %+v", sw)
	}
}

func TestSwitchesOfThisProcess(t *testing.T) {
	before := switches(os.Getpid())
	if before == nil {
		t.Fatal("no switches for this process")
	}
	for range 5 {
		time.Sleep(time.Millisecond) // a sleep gives the CPU up
	}
	after := switches(os.Getpid())
	if after.Voluntary <= before.Voluntary {
		t.Fatalf("voluntary switches %d then %d across five sleeps", before.Voluntary, after.Voluntary)
	}
	if switches(0) != nil {
		t.Fatal("switches of no process")
	}
}
