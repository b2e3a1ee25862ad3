package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests relay to a real tap in a network namespace they create, with
// the namespace's kernel on the far side. They need root; `make test` runs
// as root with KEEPNET_ITEST=1, which turns a skip into a failure.

func requireRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (a network namespace and a tap)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2's ip"
	} else if _, err := os.Stat("/dev/net/tun"); err != nil {
		why = "needs /dev/net/tun"
	}
	if why == "" {
		return
	}
	if os.Getenv("KEEPNET_ITEST") == "1" {
		t.Fatalf("%s, and KEEPNET_ITEST=1 forbids skipping", why)
	}
	t.Skip(why + "; run as root (make test sets KEEPNET_ITEST=1)")
}

// tapNS is a namespace whose kernel owns HostIP on Tap.
type tapNS struct {
	Name, Tap string
	HostIP    net.IP
}

const guestIP = "10.78.0.2"

var guestMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newTapNS(t *testing.T) *tapNS {
	t.Helper()
	id := make([]byte, 4)
	rand.Read(id)
	n := &tapNS{Name: "knrelay-" + hex.EncodeToString(id), Tap: "knr" + hex.EncodeToString(id), HostIP: net.IPv4(10, 78, 0, 1).To4()}
	sh(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	in := func(args ...string) { sh(t, append([]string{"ip", "netns", "exec", n.Name}, args...)...) }
	in("ip", "tuntap", "add", "dev", n.Tap, "mode", "tap")
	in("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1") // no router solicitations in the way
	in("ip", "addr", "add", "10.78.0.1/24", "dev", n.Tap)
	in("ip", "link", "set", n.Tap, "up")
	return n
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// openTap opens n's tap from inside the namespace: a tap binds to the
// namespace its /dev/net/tun file was opened in, so this thread enters it
// for the open and leaves again.
func (n *tapNS) openTap(t *testing.T) *os.File {
	t.Helper()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	ns, err := os.Open(filepath.Join("/var/run/netns", n.Name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	f, openErr := OpenTap(n.Tap)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("leaving namespace: %v", err) // the thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	if openErr != nil {
		t.Fatal(openErr)
	}
	t.Cleanup(func() { f.Close() })
	n.waitOperUp(t)
	return f
}

// waitOperUp waits until the kernel has seen the tap's carrier. Opening the
// tap turns the carrier on, but the kernel starts the device's queue later,
// from its link-watch work; until then it drops what it sends (the first ARP
// reply) without a trace. Link watch runs within a second on a quiet host
// and later on a loaded one.
func (n *tapNS) waitOperUp(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", n.Name, "ip", "-o", "link", "show", "dev", n.Tap).CombinedOutput()
		if err == nil && strings.Contains(string(out), "state UP") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tap %s not up after 30 s: %v %s", n.Tap, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// arpRequest is the guest asking who has ip (RFC 826), padded to the
// Ethernet minimum.
func arpRequest(ip net.IP) []byte {
	f := make([]byte, 0, 60)
	f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	f = append(f, guestMAC...)
	f = binary.BigEndian.AppendUint16(f, 0x0806) // ARP
	f = binary.BigEndian.AppendUint16(f, 1)      // hardware: Ethernet
	f = binary.BigEndian.AppendUint16(f, 0x0800) // protocol: IPv4
	f = append(f, 6, 4)
	f = binary.BigEndian.AppendUint16(f, 1) // request
	f = append(f, guestMAC...)
	f = append(f, net.ParseIP(guestIP).To4()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, ip.To4()...)
	return f[:60]
}

// isARPReply reports whether f is ip telling the guest its address.
func isARPReply(f []byte, ip net.IP) bool {
	return len(f) >= 42 && bytes.Equal(f[0:6], guestMAC) &&
		binary.BigEndian.Uint16(f[12:]) == 0x0806 && binary.BigEndian.Uint16(f[20:]) == 2 &&
		bytes.Equal(f[28:32], ip.To4()) && bytes.Equal(f[38:42], net.ParseIP(guestIP).To4())
}

// arpReplies plays QEMU on conn: it sends count ARP requests for ip and
// counts the replies. It reads until want replies came, for at most a
// minute (a loaded host may be slow to answer), and then for quiet more,
// in which no more should come.
func arpReplies(t *testing.T, conn net.Conn, ip net.IP, count, want int, quiet time.Duration) int {
	t.Helper()
	var stream []byte
	for range count {
		stream = AppendFrame(stream, arpRequest(ip))
	}
	if _, err := conn.Write(stream); err != nil {
		t.Fatal(err)
	}
	replies := 0
	s := NewStreamReader(0)
	end := time.Now().Add(time.Minute)
	if want == 0 {
		end = time.Now().Add(quiet)
	}
	for {
		conn.SetReadDeadline(end)
		err := s.Fill(conn)
		for {
			f, ferr := s.Next()
			if ferr != nil {
				t.Fatalf("guest side: %v", ferr)
			}
			if f == nil {
				break
			}
			if isARPReply(f, ip) {
				replies++
				if replies == want {
					end = time.Now().Add(quiet)
				}
			}
		}
		if err != nil {
			return replies
		}
	}
}

func TestNetnsARPThroughRelay(t *testing.T) {
	requireRoot(t)
	n := newTapNS(t)
	sock := filepath.Join(t.TempDir(), "qemu.sock")
	for _, tc := range []struct {
		name        string
		cfg         Config
		requests    int
		wantReplies int
	}{
		{"clean", Config{}, 1, 1},
		{"every request duplicated", Config{Out: Impairment{Dup: 1}}, 1, 2},
		{"every reply dropped", Config{In: Impairment{Drop: 1}}, 3, 0},
		{"requests delayed", Config{Out: Impairment{Delay: 100 * time.Millisecond}}, 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tap := n.openTap(t)
			tc.cfg.VnetHdr = true // OpenTap's taps carry virtio_net_hdr
			r, err := New(tap, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := Listen(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- r.Serve(ctx, Accepting(ln)) }()
			defer func() { cancel(); <-served; tap.Close() }()

			conn, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			got := arpReplies(t, conn, n.HostIP, tc.requests, tc.wantReplies, time.Second)
			out, in := r.Stats()
			if got != tc.wantReplies {
				t.Fatalf("%d ARP requests for %v: %d replies, want %d (out %v; in %v)", tc.requests, n.HostIP, got, tc.wantReplies, out, in)
			}
			t.Logf("out %v; in %v", out, in)
		})
	}
}

// The command itself, as a user runs it: under ip netns exec, stopped by
// SIGTERM, counters on stderr; and its errors for a missing tap and a
// socket in use.
func TestNetnsCommand(t *testing.T) {
	requireRoot(t)
	n := newTapNS(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "keepnet-relay")
	if out, err := exec.Command("go", "build", "-o", bin, "keepnet/cmd/keepnet-relay").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "qemu.sock")
	var stderr bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", n.Name, bin, "-qemu", sock, "-tap", n.Tap, "-seed", "3", "-stats", "0")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var conn net.Conn
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not listening on %s: %v\n%s", sock, err, stderr.String())
		}
	}
	defer conn.Close()
	n.waitOperUp(t)
	if got := arpReplies(t, conn, n.HostIP, 1, 1, time.Second); got != 1 {
		t.Fatalf("1 ARP request through keepnet-relay: %d replies\n%s", got, stderr.String())
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-qemu", filepath.Join(dir, "other.sock"), "-tap", "knrnosuch"}, "no such interface"},
		{[]string{"-qemu", filepath.Join(dir, "other.sock"), "-tap", n.Tap}, "in use by another process"},
		{[]string{"-qemu", sock, "-tap", n.Tap}, "in use by a running process"},
		{[]string{"-qemu", sock, "-tap", n.Tap, "-drop", "2"}, "drop probability 2"},
	} {
		out, err := exec.Command("ip", append([]string{"netns", "exec", n.Name, bin}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("keepnet-relay %s: %v, %q; want a failure saying %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("keepnet-relay after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("keepnet-relay still running a minute after SIGTERM\n%s", stderr.String())
	}
	if s := stderr.String(); !strings.Contains(s, "out: in=1 out=1") || !strings.Contains(s, "in: in=1 out=1") {
		t.Errorf("stderr after SIGTERM:\n%s\nwant counters out: in=1 out=1 and in: in=1 out=1", s)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind after exit: %v", sock, err)
	}
}
