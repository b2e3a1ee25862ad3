package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"keepnet/boot/ctl"
	"keepnet/servers/pf"
)

// maxPFRulesEncoded bounds the boot rule set on the kernel command line,
// whose whole length x86 limits to 2048 bytes; a larger rule set is
// loaded after boot (keepnet pf load).
const maxPFRulesEncoded = 1200

// readPFRules reads and checks a rule file for the kernel command line:
// a rule set the parser refuses is refused here, with its line.
func readPFRules(path string) (string, error) {
	text, err := readRuleFile(path)
	if err != nil {
		return "", fmt.Errorf("--pf-rules %w", err)
	}
	enc := base64.StdEncoding.EncodeToString([]byte(text))
	if len(enc) > maxPFRulesEncoded {
		return "", fmt.Errorf("--pf-rules %s: %d bytes are too long for the kernel command line (at most %d); boot with a shorter set and keepnet pf load this one", path, len(text), maxPFRulesEncoded*3/4)
	}
	return enc, nil
}

// readRuleFile reads a rule file and parses it.
func readRuleFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := pf.Parse(string(b)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(b), nil
}

const pfUsage = "usage: keepnet pf load FILE | rules | states [--ctl PATH]"

// pfCmd is `keepnet pf`.
func pfCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("pf", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	words, err := parseWords(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(words) == 2 && words[0] == "load":
		return pfLoad(ctx, *ctlPath, words[1], stdout)
	case len(words) == 1 && words[0] == "rules":
		st, err := pfStats(ctx, *ctlPath)
		if err == nil {
			printRules(stdout, st)
		}
		return err
	case len(words) == 1 && words[0] == "states":
		st, err := pfStats(ctx, *ctlPath)
		if err == nil {
			printStates(stdout, st)
		}
		return err
	}
	return usageError{errors.New(pfUsage)}
}

// pfLoad sends the rule file path to the appliance. The file is parsed
// here first, so that its errors name it; the appliance parses it again.
func pfLoad(ctx context.Context, ctlPath, path string, stdout io.Writer) error {
	text, err := readRuleFile(path)
	if err != nil {
		return err
	}
	resp, err := ctl.Do(ctx, ctlPath, ctl.Request{Verb: ctl.VerbPFLoad, Rules: text})
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	fmt.Fprintf(stdout, "keepnet: pf: %s loaded\n", path)
	return nil
}

// pfStats is what pf last published.
func pfStats(ctx context.Context, ctlPath string) (pf.Stats, error) {
	var st pf.Stats
	resp, err := ctl.Do(ctx, ctlPath, ctl.Request{Verb: ctl.VerbStats, Name: "pf"})
	if err != nil {
		return st, err
	}
	if !resp.OK {
		return st, errors.New(resp.Error)
	}
	return st, json.Unmarshal(resp.Stats, &st)
}

// printRules prints the rules in force with what each decided.
func printRules(w io.Writer, st pf.Stats) {
	fmt.Fprintf(w, "set default %s\n", st.Default)
	for _, r := range st.Rules {
		fmt.Fprintf(w, "@%-4d %-60s packets %d bytes %d states %d refused %d\n", r.Line, r.Rule, r.Packets, r.Bytes, r.States, r.Refused)
	}
	fmt.Fprintf(w, "%d rules; %d packets: %d passed, %d blocked; %d states\n", st.NumRules, st.Packets, st.Passed, st.Blocked, st.NumStates)
}

// printStates prints the state count and the states pf published (at
// most pf.MaxPublishedStates).
func printStates(w io.Writer, st pf.Stats) {
	fmt.Fprintf(w, "%d states\n", st.NumStates)
	for _, s := range st.States {
		fmt.Fprintln(w, s)
	}
	if more := st.NumStates - len(st.States); more > 0 {
		fmt.Fprintf(w, "... and %d more\n", more)
	}
}
