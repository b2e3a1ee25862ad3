// Command prog runs the functions of package subject and prints what each
// returned, one line each; -site arms a fault site first (rewrite's tests
// build it from an instrumented copy of subject).
package main

import (
	"flag"
	"fmt"
	"time"

	"keepnet/kernel/fault"
	"keepnet/kernel/fault/rewrite/testdata/prog/subject"
	"keepnet/kernel/pool"
)

func main() {
	site := flag.Uint("site", 0, "fault site to arm (on its first hit)")
	flag.Parse()
	if *site != 0 {
		fault.Arm(uint32(*site), 1, 0)
	}
	p, err := pool.Create(1, 4, 0)
	if err != nil {
		panic(err)
	}
	a, _ := p.Alloc()
	b, _ := p.Alloc()
	copy(mustBytes(p, a), "packet A")
	copy(mustBytes(p, b), "packet B")
	a.Len = 8
	t := subject.NewTable("x", 7)

	run("max", func() any { return subject.Max(3, 5) })
	run("sum", func() any { return subject.Sum([]int{1, 2, 3}) })
	run("find", func() any { return *t.Find("x") })
	run("check", func() any { return subject.Check(-1) })
	run("hello", func() any { return subject.Hello() })
	run("read", func() any {
		s := subject.Read(p, a)
		return fmt.Sprintf("%s; free: %v", s, p.Free(a))
	})
	fmt.Printf("activated %v\n", fault.Activated())
}

func mustBytes(p *pool.Pool, r pool.Ref) []byte {
	b, err := p.Bytes(r)
	if err != nil {
		panic(err)
	}
	return b
}

// run prints what f returns, or that it panicked, or that it did not
// return within a tenth of a second (a hang: blocked or spinning).
func run(name string, f func() any) {
	done := make(chan string, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Sprintf("panic: %v", p)
			}
		}()
		done <- fmt.Sprint(f())
	}()
	select {
	case s := <-done:
		fmt.Printf("%s: %s\n", name, s)
	case <-time.After(100 * time.Millisecond):
		fmt.Printf("%s: hang\n", name)
	}
}
