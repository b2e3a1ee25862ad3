package transport

import (
	"fmt"
	"log"
	"time"

	"keepnet/kernel/channel"
	"keepnet/servers/ops"
)

// Auditor is a core that can say where its unanswered requests are. The
// framework then audits it: a request from SYSCALL that the core has
// neither answered nor keeps anywhere it would answer it from is lost —
// a fault that swallowed it (a dropped statement, a wrong early return)
// leaves the process alive and the application waiting forever, which no
// crash or hang detection sees. The framework stops the process instead,
// so that its restart recovers: SYSCALL resubmits every request that had
// no reply, and the new generation answers them (the restart protocol in
// the package doc).
type Auditor interface {
	// Holds reports whether the core keeps m, a request it has not
	// answered, where it will answer it from: a posted receive, a held
	// send, an accept or a connect in progress. It looks in the core's own
	// structures, not in a second record of what was posted, so that it
	// sees what the core will really do.
	Holds(m channel.Msg) bool
}

// DefaultAuditAfter is how old a request must be before the audit looks
// for it (Config.AuditAfter); it looks every half of that. A request the
// core just took may be between its structures for a moment; none is for
// seconds.
const DefaultAuditAfter = 2 * time.Second

// unanswered is a request from SYSCALL the framework gave the core and saw
// no reply to yet.
type unanswered struct {
	m     channel.Msg
	since time.Time
}

// track notes that the core is given m now; nothing is tracked for a core
// that cannot be audited.
func (s *Server) track(m channel.Msg, now time.Time) {
	if s.auditor != nil {
		s.unanswered[m.ID] = unanswered{m: m, since: now}
	}
}

// audit looks for the requests older than Config.AuditAfter in the core,
// every half of that, and stops the process when one is not there.
func (s *Server) audit(now time.Time) {
	if s.auditor == nil || now.Before(s.auditDue) {
		return
	}
	s.auditDue = now.Add(s.c.AuditAfter / 2)
	for id, u := range s.unanswered {
		if now.Sub(u.since) < s.c.AuditAfter {
			continue
		}
		s.audited++
		if !s.auditor.Holds(u.m) {
			s.lost(id, u, now)
		}
	}
}

// lost stops the process: the core lost a request. Its restart is the
// recovery (see Auditor); carrying on would leave the request's
// application waiting for good.
func (s *Server) lost(id uint64, u unanswered, now time.Time) {
	msg := fmt.Sprintf("transport: request %d (%v on socket %d), given to the core %v ago, was neither answered nor held: lost; stopping, so that a restart answers it",
		id, ops.OpOf(u.m), u.m.Arg[0], now.Sub(u.since).Round(time.Millisecond))
	log.Print(msg)
	panic(msg)
}
