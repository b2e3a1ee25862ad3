package verdict

import (
	"testing"

	"keepnet/kernel/pool"
)

// An answer carries the question's id, ref and ip's own argument back,
// with the status, the reason and the rule.
func TestAnswerKeepsTheQuestion(t *testing.T) {
	ref := pool.Ref{Pool: 3, Off: 4096, Len: 60}
	q := Ask(ref, 1, 14, Out, 0xfeed)
	q.ID = 9
	a := Answer(q, StatusBlock, 2, 4)
	if a.ID != 9 || a.Ref != ref || a.Aux != [2]uint16{1, 14} || DirOf(a) != Out || a.Arg[1] != 0xfeed {
		t.Errorf("Answer(%+v) = %+v: the question's id, ref, interface, offset, direction or ip's argument changed", q, a)
	}
	if StatusOf(a) != StatusBlock || a.Arg[2] != 2 || a.Arg[3] != 5 {
		t.Errorf("Answer(..., StatusBlock, reason 2, rule 4) = status %v, Arg[2:] %v; want StatusBlock, [2 5]", StatusOf(a), a.Arg[2:])
	}
	for _, tt := range []struct{ got, want string }{
		{OpAsk.String(), "OpAsk"}, {Op(7).String(), "Op(7)"},
		{StatusBadRef.String(), "StatusBadRef"}, {Status(9).String(), "Status(9)"},
		{In.String(), "in"}, {Dir(5).String(), "Dir(5)"},
	} {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}
