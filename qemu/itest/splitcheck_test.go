package itest

import (
	"bytes"

	"keepnet/apps/splitmix"
)

// splitCheck is an io.Writer that compares what is written to it with the
// splitmix stream of a seed, as it arrives, and remembers where the first
// difference was: a corrupted transfer is reported by offset, not only by a
// hash that does not match. Write never fails, so a copy into it counts
// every byte that came.
type splitCheck struct {
	want *splitmix.Reader
	buf  []byte
	n    int64 // bytes written
	bad  int64 // offset of the first byte that differs; -1 while none does
}

func newSplitCheck(seed uint64) *splitCheck {
	return &splitCheck{want: splitmix.New(seed), bad: -1}
}

func (c *splitCheck) Write(p []byte) (int, error) {
	if c.bad < 0 {
		if cap(c.buf) < len(p) {
			c.buf = make([]byte, len(p))
		}
		want := c.buf[:len(p)]
		c.want.Read(want)
		if !bytes.Equal(p, want) {
			i := 0
			for p[i] == want[i] {
				i++
			}
			c.bad = c.n + int64(i)
		}
	}
	c.n += int64(len(p))
	return len(p), nil
}
