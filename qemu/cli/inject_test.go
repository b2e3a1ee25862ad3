package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"keepnet/boot/ctl"
	"keepnet/boot/ctl/ctltest"
	"keepnet/boot/journal"
)

// fakeAppliance answers the control protocol on a Unix socket, as init
// does, and records the kills and injections asked of it.
type fakeAppliance struct {
	mu       sync.Mutex
	killed   []string
	injected []ctl.Fault
	loaded   []string // rule sets pf-load sent
	// status is what Status answers; journal what events and logs do
	// (nil: nothing).
	status  ctl.Status
	journal *journal.Journal
}

func (f *fakeAppliance) PFLoad(text string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loaded = append(f.loaded, text)
	return nil
}

func (f *fakeAppliance) Status() ctl.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}
func (f *fakeAppliance) Events(since uint64) ([]journal.Event, uint64) {
	if f.journal == nil {
		return nil, since
	}
	return f.journal.Events(since, ctl.ReplyBudget)
}
func (f *fakeAppliance) Logs(name string, since uint64) ([]journal.Line, uint64, error) {
	if f.journal == nil {
		return nil, since, nil
	}
	l, next := f.journal.Lines(name, since, ctl.ReplyBudget)
	return l, next, nil
}
func (f *fakeAppliance) Restart(string) error { return nil }
func (f *fakeAppliance) Poweroff() error      { return nil }
func (f *fakeAppliance) Stats(name string) (json.RawMessage, error) {
	if name != "pf" {
		return nil, errors.New("none")
	}
	return json.RawMessage(pfPublished), nil
}
func (f *fakeAppliance) Profile(name string, d time.Duration) ([]byte, error) {
	if name != "httpd" {
		return nil, fmt.Errorf("unknown component %q", name)
	}
	return []byte(fmt.Sprintf("profile of %s for %v", name, d)), nil
}
func (f *fakeAppliance) Trace(time.Duration, bool) ([]byte, error) {
	return nil, errors.New("no tracer here")
}
func (f *fakeAppliance) Hook(string, string) error { return nil }

func (f *fakeAppliance) Kill(name string, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killed = append(f.killed, name+" "+sig.String())
	return nil
}

// Inject knows udp only, in generation 2; its sites are cond sites at
// udp.go:10+id, and --type picks site seed%3+1.
func (f *fakeAppliance) Inject(name string, fault ctl.Fault) (ctl.Armed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.injected = append(f.injected, fault)
	if name != "udp" {
		return ctl.Armed{}, fmt.Errorf("unknown component %q", name)
	}
	a := ctl.Armed{Component: name, Generation: 2}
	if fault.Disarm {
		return a, nil
	}
	site := fault.Site
	if site == 0 {
		site = uint32(fault.Seed%3 + 1)
	}
	a.Site, a.Type, a.File, a.Line, a.Func = site, "cond", "servers/udp/udp.go", 10+int(site), "deliver"
	a.After, a.Prob, a.Seed = fault.After, fault.Prob, fault.Seed
	return a, nil
}

// serve answers on a fresh socket until the test ends, and returns its path.
func (f *fakeAppliance) serve(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ctltest.Serve(t, path, f)
	return path
}

// Each form of keepnet inject asks init the right thing and prints one line
// saying what was armed; --sigkill and --sigstop go through kill.
func TestInject(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		wantFault  *ctl.Fault // nil: no injection
		wantKilled string
		wantOut    string
	}{
		{[]string{"udp", "--site", "4", "--after", "2", "--seed", "7"}, &ctl.Fault{Site: 4, After: 2, Seed: 7}, "",
			"keepnet: inject udp: armed site 4 (cond) at servers/udp/udp.go:14 in deliver, generation 2; fires on hit 2\n"},
		{[]string{"--type", "cond", "udp", "--seed", "4"}, &ctl.Fault{Type: "cond", Seed: 4}, "",
			"keepnet: inject udp: armed site 2 (cond) at servers/udp/udp.go:12 in deliver, generation 2; fires on the first hit (seed 4)\n"},
		{[]string{"udp", "--site", "3", "--prob", "0.01", "--seed", "9"}, &ctl.Fault{Site: 3, Prob: 0.01, Seed: 9}, "",
			"keepnet: inject udp: armed site 3 (cond) at servers/udp/udp.go:13 in deliver, generation 2; fires on each hit with probability 0.01 (seed 9)\n"},
		{[]string{"--disarm", "udp"}, &ctl.Fault{Disarm: true}, "",
			"keepnet: inject udp: disarmed generation 2\n"},
		{[]string{"--sigkill", "tcp"}, nil, "tcp " + syscall.SIGKILL.String(),
			"keepnet: inject tcp: sent SIGKILL; the supervisor restarts it\n"},
		{[]string{"tcp", "--sigstop"}, nil, "tcp " + syscall.SIGSTOP.String(),
			"keepnet: inject tcp: sent SIGSTOP; hang detection restarts it\n"},
	} {
		f := &fakeAppliance{}
		sock := f.serve(t)
		var stdout, stderr strings.Builder
		code := Main(append([]string{"inject", "--ctl", sock}, tt.args...), &stdout, &stderr)
		if code != 0 || stdout.String() != tt.wantOut {
			t.Errorf("keepnet inject %q = %d, stdout %q, stderr %q; want 0 and %q", tt.args, code, stdout.String(), stderr.String(), tt.wantOut)
		}
		f.mu.Lock()
		switch {
		case tt.wantFault == nil && len(f.injected) != 0,
			tt.wantFault != nil && (len(f.injected) != 1 || f.injected[0] != *tt.wantFault):
			t.Errorf("keepnet inject %q asked init to inject %+v, want %+v", tt.args, f.injected, tt.wantFault)
		}
		if got := strings.Join(f.killed, ","); got != tt.wantKilled {
			t.Errorf("keepnet inject %q killed %q, want %q", tt.args, got, tt.wantKilled)
		}
		f.mu.Unlock()
	}
}

// Without --seed, a seed is chosen, sent and printed, so the run replays
// with --seed.
func TestInjectChoosesSeed(t *testing.T) {
	f := &fakeAppliance{}
	sock := f.serve(t)
	var stdout, stderr strings.Builder
	if code := Main([]string{"inject", "udp", "--type", "cond", "--ctl", sock}, &stdout, &stderr); code != 0 {
		t.Fatalf("keepnet inject --type cond = %d: %s", code, stderr.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.injected) != 1 || !strings.HasSuffix(stdout.String(), fmt.Sprintf("(seed %d)\n", f.injected[0].Seed)) {
		t.Errorf("sent %+v, printed %q; want the seed sent printed", f.injected, stdout.String())
	}
}

// init's refusal reaches the user as the error, exit status 1.
func TestInjectRefused(t *testing.T) {
	f := &fakeAppliance{}
	sock := f.serve(t)
	var stdout, stderr strings.Builder
	code := Main([]string{"inject", "pf", "--site", "1", "--ctl", sock}, &stdout, &stderr)
	if code != 1 || stderr.String() != "keepnet inject: unknown component \"pf\"\n" {
		t.Errorf("keepnet inject pf = %d, stderr %q; want 1 and init's error", code, stderr.String())
	}
}

// keepnet profile takes the component's name before, between or after its
// flags, as keepnet stats does, and writes what init sent to -o.
func TestProfileNameAnywhere(t *testing.T) {
	f := &fakeAppliance{}
	sock := f.serve(t)
	for i, args := range [][]string{
		{"httpd", "--ctl", sock, "--seconds", "2"},
		{"--ctl", sock, "--seconds", "2", "httpd"},
		{"--ctl", sock, "httpd", "--seconds", "2"},
	} {
		out := filepath.Join(t.TempDir(), fmt.Sprintf("p%d.pprof", i))
		var stdout, stderr strings.Builder
		if code := Main(append(append([]string{"profile"}, args...), "-o", out), &stdout, &stderr); code != 0 {
			t.Errorf("keepnet profile %q = %d, stderr %q; want 0", args, code, stderr.String())
			continue
		}
		if got, err := os.ReadFile(out); err != nil || string(got) != "profile of httpd for 2s" {
			t.Errorf("keepnet profile %q wrote %q (%v), want the appliance's profile of httpd for 2s", args, got, err)
		}
	}
	for _, args := range [][]string{{"--ctl", sock}, {"--ctl", sock, "httpd", "tcp"}} {
		var stdout, stderr strings.Builder
		if code := Main(append([]string{"profile"}, args...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: keepnet profile NAME") {
			t.Errorf("keepnet profile %q = %d, stderr %q; want 2 and the usage", args, code, stderr.String())
		}
	}
}
