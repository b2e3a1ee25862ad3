package campaign

import (
	"strings"
	"testing"
	"time"
)

// worker's output: a tick a second, the download growing 1 MB a second
// but stalled from second 3 to 5, a broken echo at 4.5 s.
const workerOutput = `{"t":1000,"kind":"tick","c":{"down_bytes":0,"echo_lines":0}}
{"t":2000,"kind":"tick","c":{"down_bytes":1000000,"echo_lines":10}}
{"t":3000,"kind":"tick","c":{"down_bytes":2000000,"echo_lines":20}}
not json: ignored
{"t":4000,"kind":"tick","c":{"down_bytes":2000000,"echo_lines":20}}
{"t":4500,"kind":"broken","what":"echo","detail":"EOF after 20 lines"}
{"t":5000,"kind":"tick","c":{"down_bytes":2000000,"echo_lines":21}}
{"t":6000,"kind":"tick","c":{"down_bytes":3000000,"echo_lines":31}}
`

func TestTimeline(t *testing.T) {
	tl := NewTimeline()
	if err := tl.Read(strings.NewReader(workerOutput)); err != nil {
		t.Fatal(err)
	}
	at := func(ms int64) time.Time { return time.UnixMilli(ms) }
	if got := tl.At(at(3500)).DownBytes; got != 2000000 {
		t.Errorf("At(3.5 s).DownBytes = %d, want 2000000", got)
	}
	if got := tl.At(at(500)); got != (Counters{}) {
		t.Errorf("At before the first tick = %+v, want zero", got)
	}
	down := func(k Counters) int64 { return k.DownBytes }
	if got, ok := tl.FirstGrowth(at(3000), down); !ok || !got.Equal(at(6000)) {
		t.Errorf("FirstGrowth(download, 3 s) = %v %v, want 6 s", got.UnixMilli(), ok)
	}
	if _, ok := tl.FirstGrowth(at(6000), down); ok {
		t.Error("FirstGrowth after the last tick: found one")
	}
	if got := tl.Rate(at(1000), at(3000)); got != 8 {
		t.Errorf("Rate(1 s, 3 s) = %v Mbit/s, want 8", got)
	}
	if got := tl.Incidents(at(4000), at(5000)); len(got) != 1 || got[0].What != "echo" {
		t.Errorf("Incidents(4 s, 5 s) = %v, want the broken echo", got)
	}
	if got := tl.Incidents(at(5000), at(6000)); len(got) != 0 {
		t.Errorf("Incidents(5 s, 6 s) = %v, want none", got)
	}
}

func TestAnswerDNS(t *testing.T) {
	// A query for keepnet.test A, id 0x1234, recursion desired.
	q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		7, 'k', 'e', 'e', 'p', 'n', 'e', 't', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}
	a, ok := answerDNS(q)
	if !ok {
		t.Fatal("no answer")
	}
	if a[0] != 0x12 || a[1] != 0x34 || a[2]&0x80 == 0 || a[7] != 1 {
		t.Errorf("answer header % x: want id 1234, QR set, one answer", a[:12])
	}
	if got := a[len(a)-4:]; string(got) != string(dnsAnswer[:]) {
		t.Errorf("answer ends % x, want the address % x", got, dnsAnswer)
	}
	if _, ok := answerDNS(a); ok {
		t.Error("answered an answer")
	}
}

func TestEchoLineDiffers(t *testing.T) {
	if echoLine("echo", 1) == echoLine("echo", 2) || echoLine("udp", 1) == echoLine("echo", 1) {
		t.Error("two different lines are the same")
	}
	if !strings.HasSuffix(echoLine("echo", 5), "\n") {
		t.Error("a line without its newline")
	}
}
