package transport_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
	"keepnet/servers/transport"
	"keepnet/servers/transport/transporttest"
)

// auditCore keeps every OpRecvFrom (it says so in Holds) and swallows
// every OpSendTo: neither answered nor kept, as a fault that drops the
// statement keeping it would leave it. Everything else is answered.
type auditCore struct {
	fakeCore
	recvs []channel.Msg
}

func (c *auditCore) RecvFrom(m channel.Msg) { c.recvs = append(c.recvs, m) }
func (c *auditCore) SendTo(channel.Msg)     {}
func (c *auditCore) Holds(m channel.Msg) bool {
	for _, r := range c.recvs {
		if r.ID == m.ID {
			return true
		}
	}
	return false
}

// TestAuditStopsOnALostRequest: requests the core answers or keeps are
// left alone, however long they wait; one it neither answered nor keeps
// stops the process (a panic naming it) once it is older than the audit's
// age, so that a restart answers it.
func TestAuditStopsOnALostRequest(t *testing.T) {
	out := outPool(t, 4, 2048)
	core := &auditCore{}
	ip := transporttest.New(t, "ip", 1, 200, 16, 2048)
	sys := transporttest.New(t, "syscall", 1, 300, 16, 2048)
	s := transport.New(transport.Config{Name: "fake", Protocol: 99, AuditAfter: 50 * time.Millisecond}, 1, out, func(h transport.Host) transport.Protocol {
		core.h = h
		core.calls = make(chan ops.Op, 16)
		return core
	})
	s.Attach(ip.Peer)
	s.Attach(sys.Peer)

	sys.Send(ops.OpOpen.Msg(1))
	held := sys.Send(ops.OpRecvFrom.Msg(1))
	pollFor(t, s, 200*time.Millisecond) // four times the age: no panic
	if r := sys.Recv(func(m channel.Msg) bool { return ops.OpOf(m) == ops.OpOpen }); ops.StatusOf(r) != ops.StatusOK {
		t.Fatalf("open = %v", ops.StatusOf(r))
	}

	lost := sys.Send(ops.OpSendTo.Msg(1))
	msg := pollUntilPanic(t, s, 2*time.Second)
	if !strings.Contains(msg, fmt.Sprintf("request %d ", lost.ID)) || !strings.Contains(msg, "lost") {
		t.Errorf("the audit stopped with %q, want request %d named lost", msg, lost.ID)
	}
	if strings.Contains(msg, fmt.Sprintf("request %d ", held.ID)) {
		t.Errorf("the audit named the held receive %d: %q", held.ID, msg)
	}
}

// pollFor runs the server's loop by hand for d; a panic fails the test.
func pollFor(t *testing.T, s *transport.Server, d time.Duration) {
	t.Helper()
	if msg := pollUntilPanic(t, s, d); msg != "" {
		t.Fatalf("the loop stopped: %s", msg)
	}
}

// pollUntilPanic runs the loop by hand until it panics or d has passed,
// and returns what it panicked with ("" for none).
func pollUntilPanic(t *testing.T, s *transport.Server, d time.Duration) (msg string) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		s.Poll()
		time.Sleep(time.Millisecond)
	}
	return ""
}
