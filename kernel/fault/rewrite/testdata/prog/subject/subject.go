// Package subject is what rewrite's tests instrument: one small function
// per fault type, each with an answer that changes when its site fires.
package subject

import (
	"errors"

	"keepnet/kernel/pool"
)

// Max has a branch (cond) and integer operands (operand).
func Max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Sum has a loop body (loop), an assignment to drop (drop) and its operand.
func Sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}

// Table is what Find looks in.
type Table struct{ byName map[string]*int }

// NewTable holds one name.
func NewTable(name string, v int) *Table { return &Table{byName: map[string]*int{name: &v}} }

// Find returns a pointer (zero).
func (t *Table) Find(name string) *int {
	return t.byName[name]
}

// Check returns an error (zero: the error is lost).
func Check(n int) error {
	if n < 0 {
		return errNegative
	}
	return nil
}

var errNegative = errors.New("negative")

// Hello is a function entry (panic, block).
func Hello() string { return "hello" }

// Read reads the packet r names (wrong-buffer, release-early).
func Read(p *pool.Pool, r pool.Ref) string {
	b, err := p.Bytes(r)
	if err != nil {
		return "error"
	}
	return string(b)
}
