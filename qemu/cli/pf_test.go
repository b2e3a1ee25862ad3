package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pfPublished is what the fake appliance's pf published.
const pfPublished = `{"Default":"block","NumRules":2,"NumStates":3,
"Rules":[{"Rule":"pass in proto tcp from any to any port 80 keep state","Line":2,"Packets":12,"Bytes":900,"States":3},
{"Rule":"block in proto udp from any to any port 7","Line":4,"Packets":5,"Bytes":150}],
"States":["tcp in 192.0.2.7:40000 -> 10.0.2.15:80 ESTABLISHED:ESTABLISHED pkts 6:6 bytes 400:500 rule 0"],
"Packets":20,"Passed":12,"Blocked":8}`

func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pf.rules")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// keepnet pf load sends a good file and refuses a bad one itself, naming
// the file and the line, without asking the appliance.
func TestPFLoadCmd(t *testing.T) {
	f := &fakeAppliance{}
	sock := f.serve(t)
	good := "set default block\npass in proto tcp to any port 80\n"
	var stdout, stderr strings.Builder
	if code := Main([]string{"pf", "load", writeFile(t, good), "--ctl", sock}, &stdout, &stderr); code != 0 {
		t.Fatalf("keepnet pf load GOOD = %d: %s", code, stderr.String())
	}
	bad := writeFile(t, "set default block\npass in proto tcp to any port 80\npass in sideways\n")
	stdout.Reset()
	stderr.Reset()
	if code := Main([]string{"pf", "load", bad, "--ctl", sock}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), bad+": line 3, column 9") {
		t.Errorf("keepnet pf load BAD = %d, stderr %q; want 1 and the file's line 3", code, stderr.String())
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.loaded) != 1 || f.loaded[0] != good {
		t.Errorf("the appliance was sent %q, want only the good file", f.loaded)
	}
}

// keepnet pf rules and states print what pf published.
func TestPFRulesAndStatesCmd(t *testing.T) {
	sock := (&fakeAppliance{}).serve(t)
	for _, tt := range []struct {
		verb string
		want []string
	}{
		{"rules", []string{"set default block", "@2", "port 80 keep state", "packets 12 bytes 900 states 3", "@4", "packets 5", "2 rules; 20 packets: 12 passed, 8 blocked; 3 states"}},
		{"states", []string{"3 states\n", "ESTABLISHED:ESTABLISHED", "... and 2 more"}},
	} {
		var stdout, stderr strings.Builder
		if code := Main([]string{"pf", tt.verb, "--ctl", sock}, &stdout, &stderr); code != 0 {
			t.Fatalf("keepnet pf %s = %d: %s", tt.verb, code, stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("keepnet pf %s printed %q, want %q in it", tt.verb, stdout.String(), w)
			}
		}
	}
}

// --pf-rules refuses a bad file before booting anything, and one too long
// for the kernel command line.
func TestReadPFRules(t *testing.T) {
	if _, err := readPFRules(writeFile(t, "pass in proto icmp port 7\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("readPFRules(a bad file) = %v, want its line 1", err)
	}
	if _, err := readPFRules(writeFile(t, strings.Repeat("pass all\n", 200))); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("readPFRules(1800 bytes) = %v, want too long", err)
	}
	if enc, err := readPFRules(writeFile(t, "set default block\n")); err != nil || enc == "" {
		t.Errorf("readPFRules(a good file) = %q, %v", enc, err)
	}
}
