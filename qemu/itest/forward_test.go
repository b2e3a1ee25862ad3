package itest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/apps/httpd"
)

// forwardNet is the two-network topology of the forwarding tests. A is on
// keepnet's first NIC through its tap, as in every test (QEMU runs in A);
// B is on the second NIC through a tap of its own, which keepnet-relay
// joins to QEMU's stream socket for that NIC (QEMU opens a tap only in its
// own namespace). Each namespace routes the other's network through
// keepnet. This test binary serves apps/httpd's /bytes and /sink in B
// (TestHelperForwardServer) on fwdPort and fwdOtherPort.
type forwardNet struct {
	a, b *netns
	app  *appliance
	// toB is B as curl, ping and nmap in A see it: the harness's helpers
	// that talk to "the appliance" (GuestIP) talk to B's server.
	toB *netns
	// toA is A as seen from B (no server there unless a test starts one).
	toA *netns
}

// The ports B serves on.
const (
	fwdPort      = 80
	fwdOtherPort = 8080
)

// bootForward creates the two namespaces and boots keepnet between them,
// A 10.77.0.1 — 10.77.0.2 keepnet 10.78.0.2 — 10.78.0.1 B, with the packet
// filter's rules if rules is not empty, and the extra `keepnet up` flags.
func bootForward(t *testing.T, rules string, up ...string) *forwardNet {
	t.Helper()
	return bootForwardOn(t, "keepnet", rules, up...)
}

// bootForwardOn is bootForward with the appliance on stack: keepnet's, or
// Linux's as the baseline router (boot/pid1's configureLinuxStack; its
// filter is the same rules in nf_tables).
func bootForwardOn(t testing.TB, stack, rules string, up ...string) *forwardNet {
	t.Helper()
	a := newNetns(t)                             // 10.77.0.1, keepnet's first NIC 10.77.0.2
	b := newNetnsAt(t, "10.78.0.1", "10.78.0.2") // keepnet's second NIC 10.78.0.2
	run(t, "ip", "-n", a.Name, "route", "add", "10.78.0.0/24", "via", a.GuestIP)
	run(t, "ip", "-n", b.Name, "route", "add", "10.77.0.0/24", "via", b.GuestIP)
	sock := filepath.Join(t.TempDir(), "n1.sock")
	startRelay(t, b, sock, "-seed", "1", "-stats", "0")
	args := append(a.upArgs(), "--stack", stack, "--net", "stream:"+sock+",ip=10.78.0.2/24")
	if rules != "" {
		args = append(args, "--pf-rules", writeRules(t, rules))
	}
	app := boot(t, a.Name, append(args, up...)...)
	startForwardServer(t, b, fwdPort, fwdOtherPort)
	return &forwardNet{a: a, b: b, app: app,
		toB: &netns{Name: a.Name, GuestIP: b.HostIP},
		toA: &netns{Name: b.Name, GuestIP: a.HostIP}}
}

// TestForward: keepnet as a router between two networks (bootForward),
// without a packet filter. curl in A downloads 20 MB from B and uploads
// 20 MB to it, hashes checked; A pings B; B reaches keepnet's own web
// server and UDP echo at keepnet's address on its network; and a download from B
// completes with the right hash across `keepnet kill e1000.1`. ip's published
// statistics show both NICs and what it forwarded.
func TestForward(t *testing.T) {
	requireITest(t, true)
	f := bootForward(t, "")
	app, toB := f.app, f.toB
	httpWarm(t, toB)

	const size = 20_000_000
	down := httpDownload(t, toB, size, 5, floorMbps)
	up := httpUpload(t, toB, size, 6, floorMbps)
	t.Logf("through keepnet, A from B: %s at %.0f Mbit/s; A to B: %s at %.0f Mbit/s; hashes match", mb(size), down, mb(size), up)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := f.a.exec(ctx, nil, "ping", "-c", "3", "-W", "5", f.b.HostIP); err != nil {
		t.Errorf("ping from A to B through keepnet: %v\n%s", err, out)
	}
	// keepnet's own services answer B at keepnet's address on B's network,
	// from that address: the web server (tcp names it to ip: OpOutput's
	// source) and the UDP echo (a socket bound to no address: ip sends
	// from the interface the route says).
	httpWarm(t, f.b)
	httpDownload(t, f.b, 1_000_000, 8, floorMbps)
	if r := f.b.udpHelper(t, time.Minute, "echo", f.b.GuestIP+":7", 5); r["lost"] != "0" {
		t.Errorf("UDP echo from B to keepnet's second address %s: %v, want none lost", f.b.GuestIP, r)
	}

	killDuringForward(t, f, "e1000.1", size, 9)
	checkForwardStats(t, app)
}

// killDuringForward has curl in A download size bytes from B and kills
// comp a quarter of the way; the download must complete with the right
// hash once comp runs again.
func killDuringForward(t *testing.T, f *forwardNet, comp string, size int64, seed uint64) {
	t.Helper()
	before, _ := f.app.status().Component(comp)
	got, done := f.toB.download(t, size, seed)
	deadline := time.Now().Add(resumeWait)
	for got.Load() < size/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	at := got.Load()
	f.app.kill(comp)
	if err := f.app.awaitRunning(comp, before.Generation+1); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r != "" {
		t.Errorf("forwarded download across a kill of %s (at %s): %s", comp, mb(at), r)
	} else {
		t.Logf("forwarded download of %s across a kill of %s at %s: complete, hash right", mb(size), comp, mb(at))
	}
}

// checkForwardStats checks what ip published: two interfaces with their
// addresses, and forwarded datagrams.
func checkForwardStats(t *testing.T, app *appliance) {
	t.Helper()
	var st struct {
		Ifaces []struct {
			Driver, Addr string
			FramesIn     uint64
		}
		Forwarding struct{ Forwarded uint64 }
	}
	deadline := time.Now().Add(resumeWait)
	for {
		c, _ := app.status().Component("ip")
		if json.Unmarshal(c.Stats, &st) == nil && len(st.Ifaces) == 2 && st.Forwarding.Forwarded > 2*20_000_000/1500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ip's statistics %s: want two interfaces and %d forwarded datagrams or more", c.Stats, 2*20_000_000/1500)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for i, want := range []string{"e1000.0 10.77.0.2/24", "e1000.1 10.78.0.2/24"} {
		if got := st.Ifaces[i].Driver + " " + st.Ifaces[i].Addr; got != want || st.Ifaces[i].FramesIn == 0 {
			t.Errorf("interface %d: %s with %d frames in, want %s with some", i, got, st.Ifaces[i].FramesIn, want)
		}
	}
}

// startForwardServer runs TestHelperForwardServer in n's namespace on
// the given ports of its address until the test ends.
func startForwardServer(t testing.TB, n *netns, ports ...int) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", n.Name, self, "-test.run=^TestHelperForwardServer$")
	var addrs []string
	for _, p := range ports {
		addrs = append(addrs, net.JoinHostPort(n.HostIP, strconv.Itoa(p)))
	}
	cmd.Env = append(os.Environ(), "FWD_LISTEN="+strings.Join(addrs, ","))
	cmd.Stderr = os.Stderr
	stdin, stdout := startPiped(t, cmd)
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "listening") {
			go io.Copy(io.Discard, stdout)
			return
		} else if strings.HasPrefix(line, "fail:") {
			t.Fatalf("forward server: %s", line)
		}
	}
	t.Fatal("forward server ended before listening")
}

// TestHelperForwardServer is not a test of its own: the forwarding tests
// run the test binary in a namespace with FWD_LISTEN set (addresses,
// comma-separated), and this serves apps/httpd's routes (/bytes, /sink)
// on each, prints "listening" once it does, and serves until its standard
// input ends.
func TestHelperForwardServer(t *testing.T) {
	addrs := os.Getenv("FWD_LISTEN")
	if addrs == "" {
		return // run only as the helper
	}
	var lns []net.Listener
	for _, addr := range strings.Split(addrs, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Printf("fail: %v\n", err)
			return
		}
		lns = append(lns, ln)
		go http.Serve(ln, httpd.New(httpd.Config{Stack: "linux"}))
	}
	fmt.Println("listening")
	io.Copy(io.Discard, os.Stdin)
	for _, ln := range lns {
		ln.Close()
	}
}
