package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"keepnet/boot/journal"
)

// MaxLine is the longest line written to the console; a longer one is split
// into pieces of MaxLine bytes, each printed as a line of its own.
const MaxLine = 4 << 10

// console writes whole prefixed lines to Config.Console.
type console struct {
	// mu serialises writes to w: every line is one Write call, made with mu
	// held, so lines of different components never interleave.
	mu sync.Mutex
	w  io.Writer
	j  *journal.Journal // keeps the lines too; nil: not
}

// line writes "prefix: b\n".
func (c *console) line(prefix string, b []byte) {
	buf := make([]byte, 0, len(prefix)+2+len(b)+1)
	buf = append(buf, prefix...)
	buf = append(buf, ": "...)
	buf = append(buf, b...)
	buf = append(buf, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.Write(buf) // a console that fails has nowhere better to report it
	c.j.Log(prefix, b)
}

// logf writes one line of the supervisor's own.
func (c *console) logf(format string, args ...any) {
	c.line("supervisor", fmt.Appendf(nil, format, args...))
}

// lineWriter is the stdout and stderr of one process: it cuts what the
// process writes into lines and hands each to the console with the
// component's name as prefix.
type lineWriter struct {
	con    *console
	prefix string

	// mu guards buf. exec's copying goroutine calls Write, and the waiting
	// goroutine calls Flush once the process is gone.
	mu  sync.Mutex
	buf []byte // the unfinished last line, at most MaxLine bytes
}

// Write implements io.Writer; it never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			w.buf = append(w.buf, line...)
			line = w.buf
		}
		w.emit(line)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) > MaxLine {
		rest := len(w.buf) % MaxLine
		if rest == 0 {
			rest = MaxLine // keep a full piece: its newline may come next
		}
		w.emit(w.buf[:len(w.buf)-rest])
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-rest:]...)
	}
	return n, nil
}

// Flush prints the unfinished last line, if any.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}

// emit prints b as lines of at most MaxLine bytes. Needs w.mu.
func (w *lineWriter) emit(b []byte) {
	for len(b) > MaxLine {
		w.con.line(w.prefix, b[:MaxLine])
		b = b[MaxLine:]
	}
	w.con.line(w.prefix, b)
}
