package itest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"keepnet/apps/httpd"
	"keepnet/apps/splitmix"
	"keepnet/servers/header"
)

// The appliance's outgoing connections over IPv6 (issue 20): its httpd,
// with test hooks on, fetches from a server in the namespace (GET
// /fetch, apps/httpd/dial.go), by address and by a name with an AAAA
// record only, through its own resolver.

// v6Name is the name dnsmasq6 answers with ra6Router's address, and
// nothing else.
const v6Name = "v6only.test"

// dnsmasq6 runs a DNS server on the namespace's IPv4 address (the
// appliance's --dns) that knows v6Name by an AAAA record only.
func (n *netns) dnsmasq6(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--port=53", "--listen-address="+n.HostIP, "--bind-interfaces", "--host-record="+v6Name+","+ra6Router,
		"--pid-file=", "--user=root", "--log-facility=-")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
}

// httpServer6 runs TestHelperHTTPServer in the namespace on [::]:port
// until the test ends; each request it begins comes on the channel
// ("GET /bytes", ...).
func (n *netns) httpServer6(t testing.TB, port int) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	self, _ := os.Executable()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name, self, "-test.run=^TestHelperHTTPServer$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("HTTPSRV_LISTEN=[::]:%d", port))
	cmd.Stderr = os.Stderr
	stdin, stdout := startPiped(t, cmd)
	t.Cleanup(func() { stdin.Close(); cancel(); cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "listening ") {
		t.Fatalf("the namespace's HTTP server did not start: %q", sc.Text())
	}
	requests := make(chan string, 64)
	go func() {
		for sc.Scan() {
			if r, ok := strings.CutPrefix(sc.Text(), "request "); ok {
				select {
				case requests <- r:
				default:
				}
			}
		}
	}()
	return requests
}

// TestHelperHTTPServer is not a test of its own: httpServer6 runs the
// test binary inside its namespace with HTTPSRV_LISTEN set, and this
// serves apps/httpd's /bytes and /sink there (splitmix bytes; a body's
// length and SHA-256), printing "listening ADDR" and then "request METHOD
// PATH" as each request begins, until its standard input ends.
func TestHelperHTTPServer(t *testing.T) {
	addr := os.Getenv("HTTPSRV_LISTEN")
	if addr == "" {
		return // run only as the helper
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("listening %s\n", l.Addr())
	h := httpd.New(httpd.Config{Stack: "linux"})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	httpd.Serve(ctx, l, logRequests(h))
}

// fetch has the appliance's httpd fetch target (POSTing send bytes of
// splitmix(seed) if send > 0) and returns its report.
func (n *netns) fetch(t testing.TB, target string, send int64, seed uint64) fetchReport {
	t.Helper()
	r, err := n.tryFetch(target, send, seed)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// tryFetch is fetch for another goroutine than the test's.
func (n *netns) tryFetch(target string, send int64, seed uint64) (fetchReport, error) {
	q := url.Values{"url": {target}}
	if send > 0 {
		q.Set("send", fmt.Sprint(send))
		q.Set("seed", fmt.Sprint(seed))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var r fetchReport
	out, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", "330", "http://"+n.GuestIP+"/fetch?"+q.Encode())
	if err != nil {
		return r, fmt.Errorf("/fetch %s: %v", target, err)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("/fetch %s answered %q: %v", target, out, err)
	}
	return r, nil
}

// logRequests prints "request METHOD PATH" as each request to h begins.
func logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("request %s %s\n", r.Method, r.URL.Path)
		h.ServeHTTP(w, r)
	})
}

// fetchReport is apps/httpd's fetchResult.
type fetchReport struct {
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Status int    `json:"status"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	Body   string `json:"body"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
	MS     int64  `json:"ms"`
}

// splitmixSHA256 is the hex SHA-256 of n bytes of splitmix(seed).
func splitmixSHA256(n int64, seed uint64) string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(splitmix.New(seed), n))
	return hex.EncodeToString(h.Sum(nil))
}

// TestIPv6ActiveOpen (issue 20): the appliance, its SLAAC address from
// dnsmasq's advertisements, connects out over IPv6 to a server in the
// namespace: by address, an 8 MB download and a 4 MB upload, hashes
// right, the connection from its SLAAC address (the source ip picked);
// by a name with an AAAA record only, resolved through its own resolver
// (keepnet.dns); and a 48 MB download across a kill of tcp, which keeps
// the outgoing IPv6 connection (and the incoming one asking for it).
func TestIPv6ActiveOpen(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	n.raServer(t)
	n.dnsmasq6(t)
	hw := header.MAC{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	slaac := header.WithInterfaceID(netip.MustParsePrefix(ra6Prefix), header.InterfaceID(hw))
	a := boot(t, n.Name, append(n.upArgs(), "--mac", hw.String(), "--append", "keepnet.testhooks=1")...)
	configured := func(m map[string]any) bool { return hasAddr6(ipv6Addrs(m), slaac.String()+"/64") }
	if st := a.waitStats("ip", configured); !configured(st) {
		t.Fatalf("ip's IPv6 addresses %q; want %v/64 preferred", ipv6Addrs(st), slaac)
	}
	const port = 8080
	requests := n.httpServer6(t, port)
	httpWarm(t, n)
	server := fmt.Sprintf("http://[%s]:%d", ra6Router, port)

	check := func(what string, r fetchReport, size int64, sha string) {
		t.Helper()
		if !r.OK || r.Status != 200 || r.Bytes != size || r.SHA256 != sha {
			t.Fatalf("%s: %+v; want 200 and %d bytes with sha256 %s", what, r, size, sha)
		}
		if local, err := netip.ParseAddrPort(r.Local); err != nil || local.Addr() != slaac || r.Remote != fmt.Sprintf("[%s]:%d", ra6Router, port) {
			t.Errorf("%s: connection %s -> %s; want from [%v]:port to [%s]:%d", what, r.Local, r.Remote, slaac, ra6Router, port)
		}
		t.Logf("%s: %s in %d ms, %s -> %s", what, mb(size), r.MS, r.Local, r.Remote)
	}
	const down, up = 8 << 20, 4 << 20
	check("GET by address", n.fetch(t, fmt.Sprintf("%s/bytes?n=%d&seed=91", server, down), 0, 0), down, splitmixSHA256(down, 91))

	r := n.fetch(t, server+"/sink", up, 92)
	var sink struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal([]byte(r.Body), &sink); err != nil || !r.OK || sink.Bytes != up || sink.SHA256 != splitmixSHA256(up, 92) {
		t.Fatalf("POST of %s over IPv6: %+v (%v); want the server to have got them, hash right", mb(up), r, err)
	}
	t.Logf("POST by address: %s in %d ms", mb(up), r.MS)

	const byName = 2 << 20
	check("GET by name (AAAA only)", n.fetch(t, fmt.Sprintf("http://%s:%d/bytes?n=%d&seed=93", v6Name, port, byName), 0, 0), byName, splitmixSHA256(byName, 93))

	// A kill of tcp during a download over IPv6 the appliance opened.
	const big = 48 << 20
	for len(requests) > 0 {
		<-requests
	}
	type result struct {
		r   fetchReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := n.tryFetch(fmt.Sprintf("%s/bytes?n=%d&seed=94", server, big), 0, 0)
		done <- result{r, err}
	}()
	select {
	case <-requests:
	case <-time.After(2 * time.Minute):
		t.Fatal("the big download never reached the namespace's server")
	}
	time.Sleep(300 * time.Millisecond) // into the transfer
	a.kill("tcp")
	select {
	case <-done:
		t.Fatal("the download ended before tcp was killed: the kill proves nothing")
	default:
	}
	if err := a.awaitRunning("tcp", 2); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	check("GET across a kill of tcp", res.r, big, splitmixSHA256(big, 94))
	if st := a.stats("tcp"); num(st, "KeptLost") != 0 {
		t.Errorf("tcp after its restart: KeptLost %v, want 0", st["KeptLost"])
	}
}
