package ctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"syscall"
	"time"

	"keepnet/boot/journal"
)

// Handler carries out verbs. Errors are reported to the client in
// Response.Error; they never stop the server.
type Handler interface {
	Status() Status
	// Kill sends sig (SIGKILL unless the request named another) to the
	// component.
	Kill(name string, sig syscall.Signal) error
	Restart(name string) error
	// Poweroff starts an orderly shutdown and returns at once; the
	// response is sent before the machine goes down.
	Poweroff() error
	// Stats returns the counters the component last published.
	Stats(name string) (json.RawMessage, error)
	// Profile returns a CPU profile of the component over d.
	Profile(name string, d time.Duration) ([]byte, error)
	// Trace records the scheduler's events (and with syscalls every
	// system call's entry) for d and returns the kernel's text of them,
	// gzipped (at most MaxTraceBytes).
	Trace(d time.Duration, syscalls bool) ([]byte, error)
	// Hook runs a test hook in the component, if test hooks are on.
	Hook(name, hook string) error
	// Inject arms (or disarms) a fault site in the component.
	Inject(name string, f Fault) (Armed, error)
	// PFLoad puts the packet filter rule set text in force, or refuses
	// it (a *pf.ParseError says where) and leaves the rules in force.
	PFLoad(text string) error
	// Events returns the journal's events from number since on, as many
	// as fit in ReplyBudget, and the number to continue from.
	Events(since uint64) ([]journal.Event, uint64)
	// Logs returns the lines of the component name (of every component
	// if name is empty) from number since on, as many as fit in
	// ReplyBudget, and the number to continue from.
	Logs(name string, since uint64) ([]journal.Line, uint64, error)
}

// Serve answers requests read from r with responses written to w until r
// ends or fails. A line that is not a valid request gets an error response
// (with the request's id where one could be read) and serving continues.
func Serve(r io.Reader, w io.Writer, h Handler) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	enc := json.NewEncoder(w)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := enc.Encode(Handle(line, h)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Handle answers one request line.
func Handle(line []byte, h Handler) Response {
	req, err := ParseRequest(line)
	resp := Response{ID: req.ID}
	if err != nil {
		resp.Error = err.Error()
		return resp
	}
	switch req.Verb {
	case VerbStatus:
		st := h.Status()
		resp.Status = &st
	case VerbKill:
		sig, _ := ParseSignal(req.Signal) // ParseRequest checked it
		err = h.Kill(req.Name, sig)
	case VerbHook:
		err = h.Hook(req.Name, req.Hook)
	case VerbInject:
		var a Armed
		if a, err = h.Inject(req.Name, req.Fault); err == nil {
			resp.Armed = &a
		}
	case VerbRestart:
		err = h.Restart(req.Name)
	case VerbPoweroff:
		err = h.Poweroff()
	case VerbPFLoad:
		err = h.PFLoad(req.Rules)
	case VerbEvents:
		resp.Events, resp.Next = h.Events(req.Since)
	case VerbLogs:
		resp.Lines, resp.Next, err = h.Logs(req.Name, req.Since)
	case VerbStats:
		resp.Stats, err = h.Stats(req.Name)
	case VerbProfile:
		secs := req.Seconds
		if secs == 0 {
			secs = 5
		}
		resp.Profile, err = h.Profile(req.Name, time.Duration(secs)*time.Second)
	case VerbTrace:
		secs := req.Seconds
		if secs == 0 {
			secs = 2
		}
		resp.Trace, err = h.Trace(time.Duration(secs)*time.Second, req.Syscalls)
	}
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.OK = true
	}
	return resp
}

// ErrHostOnly answers a verb that changes the appliance (kill, restart,
// profile, trace, hook, inject, poweroff, pf-load) on a channel that may only look.
var ErrHostOnly = errors.New("only the host's control channel may do this")

// ReadOnly answers the verbs that change nothing (status, stats, events,
// logs) through h
// and refuses the others with ErrHostOnly. Init serves the components
// inside the appliance through it: an application may read the status,
// but not kill its neighbours or power the machine off.
func ReadOnly(h Handler) Handler { return readOnly{h} }

type readOnly struct{ h Handler }

func (r readOnly) Status() Status                                { return r.h.Status() }
func (r readOnly) Stats(name string) (json.RawMessage, error)    { return r.h.Stats(name) }
func (r readOnly) Events(since uint64) ([]journal.Event, uint64) { return r.h.Events(since) }
func (r readOnly) Logs(name string, since uint64) ([]journal.Line, uint64, error) {
	return r.h.Logs(name, since)
}
func (readOnly) Kill(string, syscall.Signal) error   { return ErrHostOnly }
func (readOnly) Hook(string, string) error           { return ErrHostOnly }
func (readOnly) Inject(string, Fault) (Armed, error) { return Armed{}, ErrHostOnly }
func (readOnly) Restart(string) error                { return ErrHostOnly }
func (readOnly) Poweroff() error                     { return ErrHostOnly }
func (readOnly) PFLoad(string) error                 { return ErrHostOnly }
func (readOnly) Profile(string, time.Duration) ([]byte, error) {
	return nil, ErrHostOnly
}
func (readOnly) Trace(time.Duration, bool) ([]byte, error) { return nil, ErrHostOnly }
