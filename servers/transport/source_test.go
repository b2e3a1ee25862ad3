package transport_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"keepnet/servers/transport"
)

// asker is a fake Host.AskSource: it notes each question and takes it
// while full is false.
type asker struct {
	keys []uint64
	dsts []netip.Addr
	full bool
}

func (a *asker) ask(dst netip.Addr, key uint64) bool {
	if a.full {
		return false
	}
	a.keys, a.dsts = append(a.keys, key), append(a.dsts, dst)
	return true
}

var (
	far6  = netip.MustParseAddr("2001:db8:99::7")
	near6 = netip.MustParseAddr("fe80::1")
	epoch = time.Unix(1_700_000_000, 0)
)

// A question is asked of IP under a key of its own, waits while asked,
// and is taken once by IP's answer; one IP could not take is not kept,
// and its key is not given again.
func TestSourceQuestionsAskAnswer(t *testing.T) {
	ip := &asker{}
	q := transport.NewSourceQuestions[string](ip.ask)
	k1, ok1 := q.Ask(far6, "first", epoch)
	k2, ok2 := q.Ask(near6, "second", epoch)
	if !ok1 || !ok2 || k1 == 0 || k2 <= k1 {
		t.Fatalf("Ask = %d %v, %d %v; want two growing keys from 1, ok", k1, ok1, k2, ok2)
	}
	if want := []uint64{k1, k2}; !slices.Equal(ip.keys, want) || !slices.Equal(ip.dsts, []netip.Addr{far6, near6}) {
		t.Errorf("asked %v about %v, want %v about %v", ip.keys, ip.dsts, want, []netip.Addr{far6, near6})
	}
	if dst, ok := q.Asked(k1); !ok || dst != far6 {
		t.Errorf("Asked(%d) = %v, %v; want %v, true", k1, dst, ok, far6)
	}

	if w, dst, ok := q.Answer(k1); !ok || w != "first" || dst != far6 {
		t.Errorf("Answer(%d) = %q, %v, %v; want %q, %v, true", k1, w, dst, ok, "first", far6)
	}
	if _, _, ok := q.Answer(k1); ok {
		t.Errorf("Answer(%d) a second time found the question", k1)
	}
	if _, ok := q.Asked(k1); ok {
		t.Errorf("Asked(%d) after its answer = true", k1)
	}
	if _, _, ok := q.Answer(k2 + 100); ok {
		t.Errorf("Answer of a key never given found a question")
	}

	ip.full = true
	k3, ok := q.Ask(far6, "refused", epoch)
	if ok || k3 <= k2 {
		t.Errorf("Ask with IP's queue full = %d, %v; want a new key, false", k3, ok)
	}
	if _, ok := q.Asked(k3); ok || q.Len() != 1 {
		t.Errorf("a question IP could not take is kept (%d wait, want 1)", q.Len())
	}
	ip.full = false
	if k4, _ := q.Ask(far6, "again", epoch); k4 <= k3 {
		t.Errorf("Ask after a refused one = key %d, want over %d", k4, k3)
	}
}

// Expire gives up on a question SourceWait after it was asked, not
// before, and says when the next one is due; its late answer finds
// nothing.
func TestSourceQuestionsExpire(t *testing.T) {
	q := transport.NewSourceQuestions[string]((&asker{}).ask)
	none := func(w string, _ netip.Addr) { t.Errorf("%q timed out on an empty table", w) }
	if next := q.Expire(epoch, none); !next.IsZero() {
		t.Errorf("Expire with no question = %v, want zero", next)
	}

	early, _ := q.Ask(far6, "early", epoch)
	q.Ask(near6, "late", epoch.Add(5*time.Second))
	var timedOut []string
	expire := func(now time.Time) time.Time {
		return q.Expire(now, func(w string, dst netip.Addr) {
			if _, ok := q.Asked(early); w == "early" && ok {
				t.Errorf("%q timed out still asked", w)
			}
			timedOut = append(timedOut, w+" to "+dst.String())
		})
	}
	for _, tt := range []struct {
		now  time.Time
		want []string
		next time.Time
	}{
		{epoch.Add(transport.SourceWait - time.Nanosecond), nil, epoch.Add(transport.SourceWait)},
		{epoch.Add(transport.SourceWait), []string{"early to " + far6.String()}, epoch.Add(5*time.Second + transport.SourceWait)},
		{epoch.Add(time.Hour), []string{"late to " + near6.String()}, time.Time{}},
	} {
		timedOut = nil
		if next := expire(tt.now); !slices.Equal(timedOut, tt.want) || !next.Equal(tt.next) {
			t.Errorf("Expire(epoch+%v) timed out %q, next %v; want %q, next %v", tt.now.Sub(epoch), timedOut, next, tt.want, tt.next)
		}
	}
	if _, _, ok := q.Answer(early); ok {
		t.Errorf("the answer to a question given up on found it")
	}
}

// Forget ends the questions nobody waits for without timing them out;
// Clear ends them all, and keys go on growing; Waiters are who waits.
func TestSourceQuestionsForgetClear(t *testing.T) {
	q := transport.NewSourceQuestions[string]((&asker{}).ask)
	q.Ask(far6, "closed", epoch)
	kept, _ := q.Ask(far6, "connecting", epoch)
	q.Forget(func(_ uint64, w string) bool { return w == "closed" })
	if got := slices.Collect(q.Waiters()); !slices.Equal(got, []string{"connecting"}) {
		t.Errorf("Waiters after Forget = %q, want [connecting]", got)
	}
	if _, ok := q.Asked(kept); !ok {
		t.Errorf("Forget ended question %d, which was not gone", kept)
	}

	q.Clear()
	if q.Len() != 0 {
		t.Errorf("Len after Clear = %d, want 0", q.Len())
	}
	if _, _, ok := q.Answer(kept); ok {
		t.Errorf("an answer after Clear found its question")
	}
	if k, _ := q.Ask(far6, "new", epoch); k <= kept {
		t.Errorf("Ask after Clear = key %d, want over %d (an old answer must not find it)", k, kept)
	}
}
