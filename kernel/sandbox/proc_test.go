package sandbox

import (
	"os"
	"testing"
)

func TestParseProcStatus(t *testing.T) {
	b := []byte("Name:\ttcp\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t104\t104\t104\t104\nGid:\t104\t104\t104\t104\n" +
		"CapInh:\t0000000000000000\nCapPrm:\t0000000000200000\nCapEff:\t0000000000200000\n" +
		"NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n")
	got, err := parseProcStatus(b)
	want := Proc{UID: 104, CapEff: 1 << 21, Seccomp: SeccompFilter, NoNewPrivs: true}
	if err != nil || got != want {
		t.Errorf("parseProcStatus = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseProcStatus([]byte("Name:\ttcp\nUid:\t0\t0\t0\t0\n")); err == nil {
		t.Error("parseProcStatus without CapEff and Seccomp: no error")
	}
}

func TestReadProcSelf(t *testing.T) {
	p, err := ReadProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != uint32(os.Geteuid()) {
		t.Errorf("ReadProc(self).UID = %d, want %d", p.UID, os.Geteuid())
	}
}
