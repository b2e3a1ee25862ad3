package pid1

import (
	"testing"

	"keepnet/boot/ctl"
)

// procStat is a two-CPU machine's /proc/stat (its intr line shortened).
const procStat = `cpu  1880465 14784 450280 11888025 3469 120 22352 7 0 0
cpu0 932974 7080 220304 5958008 780 60 10735 3 0 0
cpu1 947490 7704 229976 5930017 2688 60 11617 4 0 0
intr 61875372 0 0 0 0 0 0 0 0 1 1 14293 2858 0 1176
ctxt 217372917
btime 1796500030
processes 208462
procs_running 1
procs_blocked 0
softirq 41122387 12 9101377 4 1044419 0 0 411 16771346 0 14204818
`

func TestParseStat(t *testing.T) {
	got, err := parseStat(procStat)
	if err != nil {
		t.Fatalf("parseStat: %v", err)
	}
	want := ctl.CPUTimes{
		User:    (1880465 + 14784) * 10,
		System:  450280 * 10,
		IRQ:     (120 + 22352) * 10,
		Idle:    (11888025 + 3469) * 10,
		Stolen:  70,
		NumCPUs: 2,
		Ctxt:    217372917,
	}
	if got != want {
		t.Fatalf("parseStat = %+v, want %+v", got, want)
	}
}

func TestParseStatMalformed(t *testing.T) {
	for _, text := range []string{
		"",
		"cpu  1 2 3 4 5 6 7 8 0 0\n",            // no ctxt
		"ctxt 5\n",                              // no cpu
		"cpu  1 2 3 4 5 6 7\nctxt 5\n",          // a time short (kernels before 2.6.11)
		"cpu  1 2 3 4 5 6 7 8 0 0\nctxt many\n", // not a number
		"cpu  1 2 3 x 5 6 7 8 0 0\nctxt 5\n",    // nor this
		"cpu  1 2 3 4 5 6 7 8 0 0\nctxt 5 6\n",  // two counts
	} {
		if got, err := parseStat(text); err == nil {
			t.Errorf("parseStat(%q) = %+v, want an error", text, got)
		}
	}
}
