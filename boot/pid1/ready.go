package pid1

import (
	"context"
	"slices"
	"sync"
)

// "keepnet ready" means serving: the console line, status.json's ready and
// `keepnet up --detach` all wait until a connection made at once succeeds.
// Two kinds of things must hold for that, and readiness aggregates both:
//
//   - every supervised component is ready: its current process has said it
//     serves (boot/supervisor, "Readiness": a line on its readiness pipe,
//     kernel/notify, or "up" on its wiring socket) — httpd and echo once
//     their listeners are bound, keepnet's driver once the device is reset,
//     ip once it answers ARP;
//   - init's own conditions are met: on the Linux stack, every interface
//     init configured is usable (watchLink).
//
// Both are event-driven: a waiter sleeps until the supervisor or a
// condition changes, never on a timer. A component that restarts is
// unready until its new process says it serves; then the appliance is ready
// again (only the first time is announced on the console).

// components is the supervisor as readiness sees it.
type components interface {
	NotReady() []string
	Changed() <-chan struct{}
}

// readiness is what the appliance waits for before it is ready.
type readiness struct {
	comps components // nil when the component table was invalid

	// mu guards the fields below.
	mu      sync.Mutex
	conds   []condition   // init's own conditions, in the order first set
	changed chan struct{} // closed and replaced when a condition changes
}

// condition is one of init's own conditions.
type condition struct {
	name string
	met  bool
	why  string // what it waits for, when not met
}

func newReadiness(comps components) *readiness {
	return &readiness{comps: comps, changed: make(chan struct{})}
}

// set records whether the named condition is met; why says what it waits
// for when it is not.
func (r *readiness) set(name string, met bool, why string) {
	if met {
		why = ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.IndexFunc(r.conds, func(c condition) bool { return c.name == name })
	if i < 0 {
		r.conds = append(r.conds, condition{name: name, met: met, why: why})
	} else if r.conds[i].met == met && r.conds[i].why == why {
		return
	} else {
		r.conds[i].met, r.conds[i].why = met, why
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// waiting says what the appliance still waits for, one line each:
// components first, in table order, then init's conditions. Empty means
// ready.
func (r *readiness) waiting() []string {
	var w []string
	if r.comps == nil {
		w = append(w, "supervisor: the component table is invalid")
	} else {
		w = append(w, r.comps.NotReady()...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conds {
		if !c.met {
			w = append(w, c.name+": "+c.why)
		}
	}
	return w
}

// wait blocks until nothing is waited for, and reports true; or false if
// ctx ends first.
func (r *readiness) wait(ctx context.Context) bool {
	for {
		// Take both channels before looking, so that no change between
		// the look and the wait is missed.
		var compsChanged <-chan struct{}
		if r.comps != nil {
			compsChanged = r.comps.Changed()
		}
		r.mu.Lock()
		condChanged := r.changed
		r.mu.Unlock()
		if len(r.waiting()) == 0 {
			return true
		}
		select {
		case <-compsChanged:
		case <-condChanged:
		case <-ctx.Done():
			return false
		}
	}
}
