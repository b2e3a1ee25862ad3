package ip

import (
	"context"
	"fmt"
	"log"
	"time"

	"keepnet/servers/store"
)

// The server keeps each interface's path MTU estimates (pmtu.go) in the
// store under "pmtu" ("pmtu.N" for interface N > 0), written through a
// store.Writer (never from the loop) whenever a tick finds them changed,
// and read back before a restarted server starts its Stacks: a restart
// does not send into a narrow path at full size again, which for a path
// that drops ICMP (a black hole) would stall every connection on it anew.
// The store keeps the time each was learned, so they age across restarts
// as they would have.

// pmtuKey is the store key of interface i's path MTU estimates.
func pmtuKey(i int) string {
	if i == 0 {
		return "pmtu"
	}
	return fmt.Sprintf("pmtu.%d", i)
}

// loadPathMTUs reads every interface's kept estimates; missing or
// unreadable ones are nil (the cache starts empty, which is only slower).
func loadPathMTUs(ctx context.Context, st *store.Client, n int) [][]byte {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kept := make([][]byte, n)
	for i := range kept {
		b, ok, err := st.Get(ctx, storeNS, pmtuKey(i))
		if err != nil {
			log.Printf("store: path MTUs: %v; starting without", err)
			return kept
		}
		if ok {
			kept[i] = b
		}
	}
	return kept
}

// savePathMTUs queues the estimates of the interfaces whose changed.
func (s *server) savePathMTUs() {
	if s.pmtuJournal == nil {
		return
	}
	for i, n := range s.nics {
		if n.stack == nil {
			continue
		}
		if b, changed := n.stack.PathMTUs(); changed {
			s.pmtuJournal.Put(pmtuKey(i), b)
		}
	}
}

// ipv6Key is the store key of interface 0's IPv6 state (Stack.IPv6State):
// its addresses, routers and prefixes, so that a restarted ip answers at
// its addresses at once instead of configuring them anew (DAD, a router's
// next advertisement).
const ipv6Key = "ipv6"

// loadIPv6State reads the kept IPv6 state; nil if there is none (or the
// store does not answer: IPv6 then starts anew, which is only slower).
func loadIPv6State(ctx context.Context, st *store.Client) []byte {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, ok, err := st.Get(ctx, storeNS, ipv6Key)
	if err != nil || !ok {
		return nil
	}
	return b
}

// saveIPv6State queues interface 0's IPv6 state if it changed.
func (s *server) saveIPv6State() {
	if s.pmtuJournal == nil || len(s.nics) == 0 || s.nics[0].stack == nil {
		return
	}
	if b, changed := s.nics[0].stack.IPv6State(); changed {
		s.pmtuJournal.Put(ipv6Key, b)
	}
}
