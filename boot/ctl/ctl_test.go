package ctl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"keepnet/boot/journal"
)

type fakeHandler struct {
	killed, restarted []string
	hooks             []string
	injected          []Fault
	poweroffs         int
	loaded            []string // rule sets PFLoad took
}

func (f *fakeHandler) Status() Status {
	return Status{Ready: true, Stack: "linux", Components: []Component{{Name: "store", PID: 42, State: "running", Restarts: 1, Generation: 2}}}
}

func (f *fakeHandler) Kill(name string, sig syscall.Signal) error {
	if name != "store" {
		return fmt.Errorf("unknown component %q", name)
	}
	f.killed = append(f.killed, name+" "+sig.String())
	return nil
}

func (f *fakeHandler) Hook(name, hook string) error {
	f.hooks = append(f.hooks, name+" "+hook)
	return nil
}

func (f *fakeHandler) Inject(name string, fault Fault) (Armed, error) {
	if name != "udp" {
		return Armed{}, fmt.Errorf("unknown component %q", name)
	}
	f.injected = append(f.injected, fault)
	return Armed{Component: name, Generation: 3, Site: fault.Site, Type: "cond", File: "servers/udp/udp.go", Line: 42}, nil
}

func (f *fakeHandler) Restart(name string) error {
	f.restarted = append(f.restarted, name)
	return nil
}

func (f *fakeHandler) Poweroff() error { f.poweroffs++; return nil }

func (f *fakeHandler) PFLoad(text string) error {
	if text != "pass all\n" {
		return errors.New("line 1, column 6: refused")
	}
	f.loaded = append(f.loaded, text)
	return nil
}

func (f *fakeHandler) Stats(name string) (json.RawMessage, error) {
	if name != "ip" {
		return nil, fmt.Errorf("no statistics from %q", name)
	}
	return json.RawMessage(`{"FramesIn":7}`), nil
}

func (f *fakeHandler) Profile(name string, d time.Duration) ([]byte, error) {
	return []byte(fmt.Sprintf("%s %v", name, d)), nil
}

func (f *fakeHandler) Trace(d time.Duration, syscalls bool) ([]byte, error) {
	return []byte(fmt.Sprintf("trace %v %v", d, syscalls)), nil
}

func (f *fakeHandler) Events(since uint64) ([]journal.Event, uint64) {
	return []journal.Event{{Seq: since, Component: "tcp", Kind: journal.Crash, Reason: "signal: killed"}}, since + 1
}

func (f *fakeHandler) Logs(name string, since uint64) ([]journal.Line, uint64, error) {
	if name != "" && name != "ip" {
		return nil, 0, fmt.Errorf("unknown component %q", name)
	}
	return []journal.Line{{Seq: since, Component: "ip", Text: "up"}}, since + 1, nil
}

// TestEventsAndLogs asks for events and lines from a cursor, also through
// ReadOnly: anyone may read them.
func TestEventsAndLogs(t *testing.T) {
	for _, h := range []Handler{&fakeHandler{}, ReadOnly(&fakeHandler{})} {
		resp := Handle([]byte(`{"id":1,"verb":"events","since":7}`), h)
		if !resp.OK || len(resp.Events) != 1 || resp.Events[0].Seq != 7 || resp.Next != 8 {
			t.Errorf("events since 7 = %+v, want event 7 and next 8", resp)
		}
		resp = Handle([]byte(`{"id":2,"verb":"logs","name":"ip","since":3}`), h)
		if !resp.OK || len(resp.Lines) != 1 || resp.Lines[0].Text != "up" || resp.Next != 4 {
			t.Errorf("logs ip since 3 = %+v, want ip's line 3 and next 4", resp)
		}
		resp = Handle([]byte(`{"id":3,"verb":"logs"}`), h)
		if !resp.OK || len(resp.Lines) != 1 {
			t.Errorf("logs (every component) = %+v, want a line", resp)
		}
		resp = Handle([]byte(`{"id":4,"verb":"logs","name":"nosuch"}`), h)
		if resp.OK || !strings.Contains(resp.Error, "nosuch") {
			t.Errorf("logs nosuch = %+v, want an error naming it", resp)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line    string
		want    Request
		wantErr bool
	}{
		{`{"id":1,"verb":"status"}`, Request{ID: 1, Verb: "status"}, false},
		{`{"id":2,"verb":"kill","name":"store"}`, Request{ID: 2, Verb: "kill", Name: "store"}, false},
		{`{"id":3,"verb":"restart","name":"ip"}`, Request{ID: 3, Verb: "restart", Name: "ip"}, false},
		{`{"id":4,"verb":"poweroff"}`, Request{ID: 4, Verb: "poweroff"}, false},
		{`{"id":5,"verb":"kill"}`, Request{}, true},
		{`{"id":6,"verb":"dance"}`, Request{}, true},
		{`{"id":7}`, Request{}, true},
		{`not json`, Request{}, true},
		{`{"id":"x","verb":"status"}`, Request{}, true},
		{`{"id":8,"verb":"profile","name":"tcp","seconds":3}`, Request{ID: 8, Verb: "profile", Name: "tcp", Seconds: 3}, false},
		{`{"id":9,"verb":"profile","name":"tcp","seconds":3600}`, Request{}, true},
		{`{"id":10,"verb":"profile"}`, Request{}, true},
		{`{"id":11,"verb":"inject","name":"udp","site":7,"after":3,"seed":5}`, Request{ID: 11, Verb: "inject", Name: "udp", Fault: Fault{Site: 7, After: 3, Seed: 5}}, false},
		{`{"id":12,"verb":"inject","name":"udp","type":"cond","prob":0.5}`, Request{ID: 12, Verb: "inject", Name: "udp", Fault: Fault{Type: "cond", Prob: 0.5}}, false},
		{`{"id":13,"verb":"inject","name":"udp","disarm":true}`, Request{ID: 13, Verb: "inject", Name: "udp", Fault: Fault{Disarm: true}}, false},
		{`{"id":14,"verb":"inject","name":"udp"}`, Request{}, true},                               // no site, no type
		{`{"id":15,"verb":"inject","site":7}`, Request{}, true},                                   // no component
		{`{"id":16,"verb":"inject","name":"udp","site":7,"after":2,"prob":0.5}`, Request{}, true}, // both triggers
		{`{"id":17,"verb":"inject","name":"udp","site":7,"prob":1.5}`, Request{}, true},           // not a probability
		{`{"id":18,"verb":"inject","name":"udp","site":7,"disarm":true}`, Request{}, true},        // disarm and a site
		{`{"id":19,"verb":"trace","seconds":3}`, Request{ID: 19, Verb: "trace", Seconds: 3}, false},
		{`{"id":20,"verb":"trace","seconds":11}`, Request{}, true}, // longer than MaxTraceSeconds
	}
	for _, tt := range tests {
		got, err := ParseRequest([]byte(tt.line))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseRequest(%s) error = %v, want error %v", tt.line, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseRequest(%s) error = %v, want ErrMalformed", tt.line, err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ParseRequest(%s) = %+v, want %+v", tt.line, got, tt.want)
		}
	}
}

func TestServe(t *testing.T) {
	h := &fakeHandler{}
	in := strings.Join([]string{
		`{"id":1,"verb":"status"}`,
		``,
		`garbage`,
		`{"id":3,"verb":"kill","name":"store"}`,
		`{"id":4,"verb":"kill","name":"nosuch"}`,
		`{"id":5,"verb":"restart","name":"store"}`,
		`{"id":6,"verb":"poweroff"}`,
		`{"id":7,"verb":"stats","name":"ip"}`,
		`{"id":8,"verb":"profile","name":"tcp"}`,
		`{"id":9,"verb":"kill","name":"store","signal":"STOP"}`,
		`{"id":10,"verb":"kill","name":"store","signal":"NOPE"}`,
		`{"id":11,"verb":"hook","name":"ip","hook":"spin"}`,
		`{"id":12,"verb":"inject","name":"udp","site":9,"after":2,"seed":4}`,
		`{"id":13,"verb":"inject","name":"tcp","site":9}`,
	}, "\n")
	var out strings.Builder
	if err := Serve(strings.NewReader(in), &out, h); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	var got []Response
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r Response
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("response %q is not JSON: %v", sc.Text(), err)
		}
		got = append(got, r)
	}
	if len(got) != 13 {
		t.Fatalf("got %d responses, want 13 (one per non-empty line):\n%s", len(got), out.String())
	}
	wantOK := []bool{true, false, true, false, true, true, true, true, true, false, true, true, false}
	wantID := []uint64{1, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}
	for i, r := range got {
		if r.OK != wantOK[i] || r.ID != wantID[i] {
			t.Errorf("response %d = id %d ok %v (%q), want id %d ok %v", i, r.ID, r.OK, r.Error, wantID[i], wantOK[i])
		}
	}
	if got[0].Status == nil || got[0].Status.Components[0].Name != "store" {
		t.Errorf("status response = %+v, want the handler's status", got[0].Status)
	}
	if string(got[6].Stats) != `{"FramesIn":7}` {
		t.Errorf("stats response = %s, want the component's counters", got[6].Stats)
	}
	if string(got[7].Profile) != "tcp 5s" {
		t.Errorf("profile response = %q, want the handler's profile of tcp over the default 5s", got[7].Profile)
	}
	if !strings.Contains(got[3].Error, "nosuch") {
		t.Errorf("kill nosuch error = %q, want it to name the component", got[3].Error)
	}
	if a := got[11].Armed; a == nil || a.Component != "udp" || a.Site != 9 || a.Generation != 3 || a.File != "servers/udp/udp.go" {
		t.Errorf("inject response = %+v, want the handler's armed site 9 of udp generation 3", a)
	}
	if got[12].Armed != nil || !strings.Contains(got[12].Error, "tcp") {
		t.Errorf("inject tcp response = armed %+v, error %q; want no site and an error naming tcp", got[12].Armed, got[12].Error)
	}
	if want := []Fault{{Site: 9, After: 2, Seed: 4}}; fmt.Sprint(h.injected) != fmt.Sprint(want) {
		t.Errorf("handler injected %+v, want %+v", h.injected, want)
	}
	wantKilled := []string{"store " + syscall.SIGKILL.String(), "store " + syscall.SIGSTOP.String()}
	if fmt.Sprint(h.killed) != fmt.Sprint(wantKilled) || len(h.restarted) != 1 || h.poweroffs != 1 || fmt.Sprint(h.hooks) != "[ip spin]" {
		t.Errorf("handler calls: killed %v restarted %v poweroffs %d hooks %v, want killed %v, 1 restart, 1 poweroff, hooks [ip spin]",
			h.killed, h.restarted, h.poweroffs, h.hooks, wantKilled)
	}
}

// A virtio-serial port is one stream for the guest's whole life: a client
// may first read the answer to an earlier client's request. Do must skip it.
func TestDoSkipsStaleAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadBytes('\n')
		req, _ := ParseRequest(line)
		fmt.Fprintf(c, `{"id":%d,"ok":true,"status":{"ready":false,"stack":"stale","components":[]}}`+"\n", req.ID+1)
		fmt.Fprintf(c, "{half a line\n")
		json.NewEncoder(c).Encode(Handle(line, &fakeHandler{}))
	}()
	resp, err := Do(context.Background(), path, Request{Verb: VerbStatus})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if resp.Status == nil || resp.Status.Stack != "linux" {
		t.Errorf("Do(status) = %+v, want the answer with its own id (stack linux)", resp)
	}
}

// Do gives up at its context's deadline on a peer that never answers (this
// one holds the connection until the test ends).
func TestDoTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	silent := make(chan struct{})
	defer close(silent)
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			<-silent // never answers
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Do(ctx, path, Request{Verb: VerbStatus})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Do against a silent peer = %v, want a deadline error", err)
		}
	case <-time.After(time.Minute): // only a hang takes this long
		t.Fatal("Do against a silent peer still waiting a minute after its 200ms deadline")
	}
}

func TestDoNoChannel(t *testing.T) {
	_, err := Do(context.Background(), filepath.Join(t.TempDir(), "missing.sock"), Request{Verb: VerbStatus})
	if err == nil || !strings.Contains(err.Error(), "keepnet up") {
		t.Errorf("Do on a missing socket: err = %v, want a hint to start the appliance", err)
	}
}

// Through ReadOnly, status and stats are answered and every verb that
// changes something is refused without reaching the handler.
func TestReadOnly(t *testing.T) {
	f := &fakeHandler{}
	h := ReadOnly(f)
	for _, tc := range []struct {
		line   string
		wantOK bool
	}{
		{`{"id":1,"verb":"status"}`, true},
		{`{"id":2,"verb":"stats","name":"ip"}`, true},
		{`{"id":3,"verb":"kill","name":"store"}`, false},
		{`{"id":4,"verb":"restart","name":"store"}`, false},
		{`{"id":5,"verb":"profile","name":"store"}`, false},
		{`{"id":6,"verb":"poweroff"}`, false},
		{`{"id":7,"verb":"inject","name":"udp","site":1}`, false},
		{`{"id":8,"verb":"pf-load","rules":"pass all\n"}`, false},
		{`{"id":9,"verb":"trace"}`, false},
	} {
		resp := Handle([]byte(tc.line), h)
		if resp.OK != tc.wantOK || !tc.wantOK && resp.Error != ErrHostOnly.Error() {
			t.Errorf("Handle(%s) through ReadOnly = ok %v error %q, want ok %v", tc.line, resp.OK, resp.Error, tc.wantOK)
		}
	}
	if len(f.killed) != 0 || len(f.restarted) != 0 || f.poweroffs != 0 || len(f.injected) != 0 || len(f.loaded) != 0 {
		t.Errorf("the handler behind ReadOnly killed %v, restarted %v, powered off %d times, injected %v, loaded %q; want nothing", f.killed, f.restarted, f.poweroffs, f.injected, f.loaded)
	}
}

// pf-load hands the rule text to the handler, and its refusal (where the
// parser stopped) back to the host.
func TestPFLoad(t *testing.T) {
	h := &fakeHandler{}
	if r := Handle([]byte(`{"id":1,"verb":"pf-load","rules":"pass all\n"}`), h); !r.OK || len(h.loaded) != 1 {
		t.Errorf("pf-load of good rules = ok %v error %q, handler loaded %q; want ok, loaded", r.OK, r.Error, h.loaded)
	}
	if r := Handle([]byte(`{"id":2,"verb":"pf-load","rules":"pass sideways\n"}`), h); r.OK || !strings.Contains(r.Error, "line 1, column 6") {
		t.Errorf("pf-load of bad rules = ok %v error %q; want the handler's error with its line", r.OK, r.Error)
	}
}
