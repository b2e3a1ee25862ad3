package socket

import (
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/kernel/pool"
)

// Requests that do not fit in the channel wait in the Stack; room in the
// channel comes without a wake-up, so the dispatcher must not be in its
// idle wait then. Here that wait is an hour: the requests queued behind a
// full channel still reach the server once it takes the first ones, with
// no reply (which would wake the dispatcher) in between.
func TestBacklogIsSentWithoutAReply(t *testing.T) {
	defer func(old time.Duration) { idleWait = old }(idleWait)
	idleWait = time.Hour
	const slots, opens = 4, 12
	p, err := pool.Create(1000+poolIDs.Add(1), 16, 2048)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b, err := channel.NewLocal(slots)
	if err != nil {
		t.Fatal(err)
	}
	st := New(a, p)
	defer st.Close()
	time.Sleep(50 * time.Millisecond) // the dispatcher in its idle wait
	for range opens {
		go st.ListenPacket("udp", ":0") // fails when st closes
	}
	seen, in := 0, make([]channel.Msg, slots)
	deadline := time.Now().Add(30 * time.Second)
	for seen < opens {
		if time.Now().After(deadline) {
			t.Fatalf("the server took %d of %d requests in 30 s: the rest stayed queued behind a channel of %d slots", seen, opens, slots)
		}
		b.Wait(10 * time.Millisecond)
		seen += b.Recv(in) // and never replies
	}
}
