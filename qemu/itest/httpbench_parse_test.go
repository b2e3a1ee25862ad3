package itest

import "testing"

// The clients' summaries as wrk 4.1 and ab 2.3 (Debian bookworm) print
// them.
const (
	wrkClean = `Running 2s test @ http://127.0.0.1:18080/f
  2 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    34.40ms  117.88ms 837.70ms   93.36%
    Req/Sec   747.17    284.33     1.25k    65.00%
  2974 requests in 2.00s, 3.48MB read
Requests/sec:   1484.90
Transfer/sec:      1.74MB
`
	wrkSocketErrors = `  2974 requests in 2.00s, 3.48MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
Requests/sec:   1484.90
`
	wrk404 = `  1507 requests in 1.00s, 765.45KB read
  Non-2xx or 3xx responses: 1507
Requests/sec:   1506.58
`
	abClean = `Concurrency Level:      10
Time taken for tests:   2.002 seconds
Complete requests:      2922
Failed requests:        0
Total transferred:      3582776 bytes
Requests per second:    1459.71 [#/sec] (mean)
`
	abFailures = `Complete requests:      2922
Failed requests:        7
   (Connect: 0, Receive: 0, Length: 7, Exceptions: 0)
Requests per second:    1459.71 [#/sec] (mean)
`
	ab404 = `Complete requests:      100
Failed requests:        0
Non-2xx responses:      100
Requests per second:    1429.78 [#/sec] (mean)
`
)

func TestParseHTTPClients(t *testing.T) {
	for _, c := range []struct {
		name, out string
		parse     func(string) (clientStats, error)
		rate      float64
		requests  int64
		errors    string // "" when parsing must fail
	}{
		{"wrk", wrkClean, wrkSummary.parse, 1484.90, 2974, "none"},
		{"wrk socket errors", wrkSocketErrors, wrkSummary.parse, 1484.90, 2974, "12 read, 3 timeout"},
		{"wrk 404", wrk404, wrkSummary.parse, 0, 0, ""},
		{"wrk nothing", "unable to connect to 10.0.0.2:80 Connection refused\n", wrkSummary.parse, 0, 0, ""},
		{"ab", abClean, abSummary.parse, 1459.71, 2922, "none"},
		{"ab failures", abFailures, abSummary.parse, 1459.71, 2922, "7 failed"},
		{"ab 404", ab404, abSummary.parse, 0, 0, ""},
		{"ab nothing", "apr_socket_connect(): Connection refused (111)\n", abSummary.parse, 0, 0, ""},
	} {
		s, err := c.parse(c.out)
		if c.errors == "" {
			if err == nil {
				t.Errorf("%s: parsed as %+v, want an error", c.name, s)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if s.rate != c.rate || s.requests != c.requests || s.errors() != c.errors {
			t.Errorf("%s: rate %v, %d requests, errors %q; want %v, %d, %q", c.name, s.rate, s.requests, s.errors(), c.rate, c.requests, c.errors)
		}
	}
}
