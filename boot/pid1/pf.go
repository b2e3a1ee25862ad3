package pid1

import (
	"errors"
	"fmt"
	"log"
	"sync"

	"keepnet/boot/hub"
	"keepnet/kernel/keep"
	"keepnet/servers/pf"
)

// pfRules is init's side of the packet filter's rules: the kept memory
// pf reads them from (servers/pf, keeprules.go), of which init is the one
// writer. It writes the boot rule set before pf first starts, and each
// rule set `keepnet pf load` sends once the parser accepted it; pf takes
// a new one within a pass of its loop, and a restarted pf finds the last
// one there.
type pfRules struct {
	mu  sync.Mutex // serialises writers: control clients are served concurrently
	mem []byte     // mapped for init's life; nil: no packet filter
}

// errNoPF answers pf-load on an appliance booted without rules.
var errNoPF = errors.New("no packet filter runs: boot with keepnet up --pf-rules FILE")

// setUpPF maps pf's rules memory and writes the boot rule set into it.
func setUpPF(h *hub.Hub, rules string) (*pfRules, error) {
	f, err := h.Kept("pf", pf.RulesName)
	if err != nil {
		return nil, err
	}
	mem, err := keep.Map(f)
	if err != nil {
		return nil, err
	}
	r := &pfRules{mem: mem}
	return r, r.write(rules)
}

// load parses text and, if the parser accepts it, puts it in force. A
// refused text leaves the rules in force alone; the error (a
// *pf.ParseError) names the line and column.
func (r *pfRules) load(text string) error {
	if r == nil {
		return errNoPF
	}
	rs, err := pf.Parse(text)
	if err != nil {
		return fmt.Errorf("rules refused, those in force stay: %w", err)
	}
	if err := r.write(text); err != nil {
		return err
	}
	log.Printf("pf: %d rules loaded", len(rs.Rules))
	return nil
}

func (r *pfRules) write(text string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return pf.WriteRules(r.mem, text)
}
