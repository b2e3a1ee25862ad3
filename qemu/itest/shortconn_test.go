package itest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shortConns is how many connections BenchmarkShortConnections opens and
// closes one after the other: 2,000 unless KEEPNET_SHORT_CONNS says more
// (issue 21 asks for 50,000 in a row; under TCG that takes hours).
func shortConns(tb testing.TB) int {
	n := 2000
	if s := os.Getenv("KEEPNET_SHORT_CONNS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2000 {
			tb.Fatalf("KEEPNET_SHORT_CONNS=%q: want a number of at least 2000", s)
		}
		n = v
	}
	return n
}

// BenchmarkShortConnections boots each stack and, from the namespace,
// makes HTTP requests one after the other, each on a connection of its
// own (GET /bytes?n=16 with "Connection: close": httpd closes first, so
// every connection ends in TIME-WAIT on the appliance), shortConns of
// them. It reports the rate of the whole run and of its first and last
// thousand, whose ratio shows whether a connection costs more the more
// connections the appliance has seen (issue 21: timers and TIME-WAIT per
// idle connection), and, on keepnet's stack, tcp's processor time per
// connection and how many TIME-WAITs it held at the end. Run it with
// -benchtime=1x.
func BenchmarkShortConnections(b *testing.B) {
	for _, stack := range []string{"linux", "keepnet"} {
		b.Run(stack, func(b *testing.B) {
			requireITest(b, true)
			n := newNetns(b)
			a := boot(b, n.Name, append(n.upArgs(), "--stack", stack)...)
			count := shortConns(b)
			// The client closes first, so its TIME-WAITs are the
			// namespace's: give it ports enough and let it reuse them.
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			for _, kv := range []string{"net.ipv4.ip_local_port_range=1024 65000", "net.ipv4.tcp_tw_reuse=1"} {
				if out, err := n.exec(ctx, nil, "sysctl", "-qw", kv); err != nil {
					b.Fatalf("sysctl %s: %v %s", kv, err, out)
				}
			}
			cpu := func() int64 {
				c, _ := a.status().Component("tcp")
				return c.CPUMillis
			}
			var cpuBefore int64
			if stack == "keepnet" {
				cpuBefore = cpu()
			}
			self, _ := os.Executable()
			b.ResetTimer()
			out, err := n.exec(ctx, nil, "env", "SHORT_CONN_ADDR="+n.GuestIP+":80", "SHORT_CONN_COUNT="+strconv.Itoa(count),
				self, "-test.run=^TestHelperShortConnections$", "-test.v")
			b.StopTimer()
			if err != nil {
				b.Fatalf("short connections: %v\n%s", err, out)
			}
			rates := parseRates(b, string(out))
			first, last := rates[0], rates[len(rates)-1]
			b.Logf("%s: %d connections, per thousand (conn/s): %v", stack, count, rates)
			b.ReportMetric(mean(rates), "conn/s")
			b.ReportMetric(first, "first-1000-conn/s")
			b.ReportMetric(last, "last-1000-conn/s")
			b.ReportMetric(last/first, "last/first")
			if stack == "keepnet" {
				b.ReportMetric(float64(cpu()-cpuBefore)*1000/float64(count), "tcp-cpu-µs/conn")
				tw, _ := a.stats("tcp")["TimeWait"].(float64)
				b.ReportMetric(tw, "tcp-time-waits")
			}
			b.ReportMetric(0, "ns/op")
		})
	}
}

// parseRates reads the helper's "rate N" lines, one per thousand.
func parseRates(tb testing.TB, out string) []float64 {
	var rates []float64
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "rate" {
			r, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				tb.Fatalf("helper line %q: %v", l, err)
			}
			rates = append(rates, r)
		}
	}
	if len(rates) < 2 {
		tb.Fatalf("helper reported %d rates:\n%s", len(rates), out)
	}
	return rates
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// TestHelperShortConnections is the client BenchmarkShortConnections runs
// in the namespace: SHORT_CONN_COUNT connections to httpd at
// SHORT_CONN_ADDR in a row, each one request for 16 bytes that the server
// answers and then closes; it prints the rate of each thousand ("rate N",
// connections per second). A connection that
// fails is retried once after a second (a SYN the host's tap queue
// dropped); a second failure ends the run.
func TestHelperShortConnections(t *testing.T) {
	addr := os.Getenv("SHORT_CONN_ADDR")
	if addr == "" {
		return // run only as the helper
	}
	count, _ := strconv.Atoi(os.Getenv("SHORT_CONN_COUNT"))
	req := []byte("GET /bytes?n=16&seed=1 HTTP/1.1\r\nHost: keepnet\r\nConnection: close\r\n\r\n")
	one := func() error {
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(req); err != nil {
			return err
		}
		resp, err := io.ReadAll(c) // to the server's FIN
		if err != nil {
			return err
		}
		head, body, ok := strings.Cut(string(resp), "\r\n\r\n")
		if !ok || !strings.HasPrefix(head, "HTTP/1.1 200 ") || len(body) != 16 {
			return fmt.Errorf("response %q: want 200 and 16 bytes", resp)
		}
		return nil
	}
	start := time.Now()
	for i := 1; i <= count; i++ {
		if err := one(); err != nil {
			time.Sleep(time.Second)
			if err2 := one(); err2 != nil {
				t.Fatalf("connection %d: %v, and again: %v", i, err, err2)
			}
		}
		if i%1000 == 0 {
			fmt.Printf("rate %.1f\n", 1000/time.Since(start).Seconds())
			start = time.Now()
		}
	}
}
