package pid1

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"keepnet/boot/ctl"
)

// Scheduler traces (keepnet trace)
//
// A request crosses five processes, and under TCG what it costs is mostly
// their switches: which process ran when, who woke whom and how long the
// woken one waited for a processor. Init records exactly that with the
// kernel's own tracer (tracefs): sched_switch, sched_wakeup and the
// interrupt handlers' entries, for a few seconds, in a ring of
// traceBufferKiB per processor that keeps the latest events. The text the
// kernel formats goes back gzipped (ctl.MaxTraceBytes); the host reads it
// (qemu/cli, keepnet trace).

// tracefs is where init mounts the kernel's tracer.
const tracefs = "/sys/kernel/tracing"

// traceBufferKiB is each processor's ring: about 10,000 events, whose
// text compresses to well within one control response.
const traceBufferKiB = 512

// traceEvents are the events a trace records.
var traceEvents = []string{"sched/sched_switch", "sched/sched_wakeup", "irq/irq_handler_entry"}

// traceMu keeps two traces from sharing the one tracer.
var traceMu sync.Mutex

// Trace records the scheduler's events for d, and with syscalls every
// system call's entry, and returns the kernel's text of them, gzipped.
func (a *appliance) Trace(d time.Duration, syscalls bool) ([]byte, error) {
	if !traceMu.TryLock() {
		return nil, errors.New("a trace is already running")
	}
	defer traceMu.Unlock()
	if err := mountTracefs(); err != nil {
		return nil, err
	}
	set := func(file, value string) error {
		return os.WriteFile(filepath.Join(tracefs, file), []byte(value), 0)
	}
	events := traceEvents
	if syscalls {
		events = append(slices.Clip(events), "raw_syscalls/sys_enter")
	}
	stop := func() {
		set("tracing_on", "0")
		for _, e := range events {
			set("events/"+e+"/enable", "0")
		}
	}
	stop()
	for _, s := range [][2]string{
		{"buffer_size_kb", fmt.Sprint(traceBufferKiB)},
		{"trace_clock", "global"}, // one clock for both processors' rings
		{"trace", ""},             // empties the rings
	} {
		if err := set(s[0], s[1]); err != nil {
			return nil, fmt.Errorf("trace: %w", err)
		}
	}
	for _, e := range events {
		if err := set("events/"+e+"/enable", "1"); err != nil {
			stop()
			return nil, fmt.Errorf("trace: %w", err)
		}
	}
	if err := set("tracing_on", "1"); err != nil {
		stop()
		return nil, fmt.Errorf("trace: %w", err)
	}
	time.Sleep(d)
	stop()
	text, err := os.ReadFile(filepath.Join(tracefs, "trace"))
	set("trace", "")
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	return gzipWithin(text, ctl.MaxTraceBytes)
}

// mountTracefs mounts the tracer once.
func mountTracefs() error {
	if _, err := os.Stat(filepath.Join(tracefs, "trace")); err == nil {
		return nil
	}
	if err := unix.Mount("tracefs", tracefs, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && err != unix.EBUSY {
		return fmt.Errorf("mount tracefs on %s: %w (a kernel without CONFIG_FTRACE?)", tracefs, err)
	}
	return nil
}

// gzipWithin gzips text, dropping its oldest lines (after the kernel's
// header) until the result is at most limit bytes.
func gzipWithin(text []byte, limit int) ([]byte, error) {
	header, body := splitHeader(text)
	for {
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		w.Write(header)
		w.Write(body)
		if err := w.Close(); err != nil {
			return nil, err
		}
		if b.Len() <= limit {
			return b.Bytes(), nil
		}
		if len(body) == 0 {
			return nil, fmt.Errorf("trace: the header alone is %d bytes gzipped", b.Len())
		}
		cut := len(body) / 4 // the oldest quarter
		if i := bytes.IndexByte(body[cut:], '\n'); i >= 0 {
			cut += i + 1
		} else {
			cut = len(body)
		}
		body = body[cut:]
	}
}

// splitHeader splits the kernel's trace text into its comment lines and
// its events.
func splitHeader(text []byte) (header, body []byte) {
	i := 0
	for i < len(text) && text[i] == '#' {
		j := bytes.IndexByte(text[i:], '\n')
		if j < 0 {
			return text, nil
		}
		i += j + 1
	}
	return text[:i], text[i:]
}
