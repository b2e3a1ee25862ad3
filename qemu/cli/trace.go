package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"keepnet/boot/ctl"
	"keepnet/qemu/schedtrace"
)

// traceCmd is keepnet trace: the appliance records its scheduler's events
// (boot/pid1, trace.go); this writes their text to a file and prints the
// summary of package schedtrace.
func traceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trace", stderr)
	ctlPath := fs.String("ctl", DefaultCtl(), "control channel path")
	secs := fs.Int("seconds", 2, fmt.Sprintf("how long to record (1-%d)", ctl.MaxTraceSeconds))
	out := fs.String("o", "trace.txt", "where to write the kernel's text of the events")
	syscalls := fs.Bool("syscalls", false, "record every system call's entry too (sys_enter, in the text only)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *secs < 1 || *secs > ctl.MaxTraceSeconds {
		return usageError{fmt.Errorf("--seconds %d: want 1 to %d", *secs, ctl.MaxTraceSeconds)}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(*secs)*time.Second+30*time.Second)
	defer cancel()
	fmt.Fprintf(stderr, "keepnet: tracing the scheduler for %ds\n", *secs)
	resp, err := ctl.Do(ctx, *ctlPath, ctl.Request{Verb: ctl.VerbTrace, Seconds: *secs, Syscalls: *syscalls})
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	zr, err := gzip.NewReader(bytes.NewReader(resp.Trace))
	if err != nil {
		return fmt.Errorf("the appliance's trace: %w", err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("the appliance's trace: %w", err)
	}
	if err := os.WriteFile(*out, text, 0o644); err != nil {
		return err
	}
	events, err := schedtrace.Parse(bytes.NewReader(text))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "keepnet: %s: %d events\n", *out, len(events))
	return schedtrace.Summarize(events).Write(stdout)
}
