package store

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testAccess names uid 102 ip, 103 tcp, 203 sshd, with "stats" shared and
// room for two pairs of up to 100 bytes (entryCost) each.
func testAccess() Access {
	names := map[uint32]string{102: "ip", 103: "tcp", 203: "sshd"}
	return Access{
		Names:      func(uid uint32) (string, bool) { n, ok := names[uid]; return n, ok },
		Shared:     []string{"stats"},
		QuotaBytes: 200,
		QuotaKeys:  2,
	}
}

func TestAccessRules(t *testing.T) {
	a := testAccess()
	var (
		root     = caller{uid: 0, known: true}
		tcp      = caller{uid: 103, known: true, name: "tcp"}
		stranger = caller{uid: 999, known: true}
		unknown  = caller{}
	)
	for _, tc := range []struct {
		who  caller
		req  request
		want bool
	}{
		{tcp, request{op: opPut, ns: "tcp", key: "listener/80"}, true},
		{tcp, request{op: opList, ns: "tcp"}, true},
		{tcp, request{op: opGet, ns: "ip", key: "config"}, false},
		{tcp, request{op: opList, ns: "ip"}, false},
		{tcp, request{op: opPut, ns: "ip", key: "config"}, false},
		{tcp, request{op: opGet, ns: "sshd", key: "hostkey"}, false}, // a secret
		{tcp, request{op: opPut, ns: "stats", key: "tcp"}, true},
		{tcp, request{op: opDelete, ns: "stats", key: "tcp"}, true},
		{tcp, request{op: opPut, ns: "stats", key: "ip"}, false},
		{tcp, request{op: opGet, ns: "stats", key: "ip"}, true},
		{tcp, request{op: opList, ns: "stats"}, true},
		{root, request{op: opGet, ns: "sshd", key: "hostkey"}, true},
		{root, request{op: opList, ns: "stats"}, true},
		{stranger, request{op: opHello}, true},
		{stranger, request{op: opList, ns: "stats"}, false},
		{unknown, request{op: opGet, ns: "tcp", key: "x"}, false},
	} {
		err := a.check(tc.who, &tc.req)
		if got := err == nil; got != tc.want || !got && !errors.Is(err, ErrDenied) {
			t.Errorf("%v %v %s/%s: %v, want allowed %v", tc.who, tc.req.op, tc.req.ns, tc.req.key, err, tc.want)
		}
	}
}

// put is one Put through the server's handler, as who.
func put(s *Server, who caller, ns, key string, n int) status {
	body := appendRequest(nil, &request{id: 1, op: opPut, ns: ns, key: key, value: make([]byte, n)})[lenSize:]
	return s.handle(body, who).status
}

func del(s *Server, who caller, ns, key string) status {
	return s.handle(appendRequest(nil, &request{id: 1, op: opDelete, ns: ns, key: key})[lenSize:], who).status
}

// Each component's pairs, its namespace and its key in "stats" together,
// stay within its quota of keys and bytes; another's usage does not count,
// a Delete gives room back, and init has no quota.
func TestQuota(t *testing.T) {
	s := newServer(1, MaxBytes, WithAccess(testAccess()))
	tcp := caller{uid: 103, known: true, name: "tcp"}
	ip := caller{uid: 102, known: true, name: "ip"}
	root := caller{known: true}
	steps := []struct {
		name string
		got  status
		want status
	}{
		{"tcp puts tcp/a", put(s, tcp, "tcp", "a", 10), statusOK},
		{"tcp puts stats/tcp", put(s, tcp, "stats", "tcp", 10), statusOK},
		{"tcp puts a third key", put(s, tcp, "tcp", "b", 10), statusFull},
		{"tcp grows tcp/a past 200 bytes", put(s, tcp, "tcp", "a", 150), statusFull},
		{"tcp rewrites tcp/a within its bytes", put(s, tcp, "tcp", "a", 50), statusOK},
		{"ip puts its own", put(s, ip, "ip", "a", 10), statusOK},
		{"ip puts stats/ip", put(s, ip, "stats", "ip", 10), statusOK},
		{"tcp deletes stats/tcp", del(s, tcp, "stats", "tcp"), statusOK},
		{"tcp puts tcp/b in the room", put(s, tcp, "tcp", "b", 10), statusOK},
		{"init puts beyond tcp's quota", put(s, root, "tcp", "c", 150), statusOK},
		{"tcp reads ip's", s.handle(appendRequest(nil, &request{id: 1, op: opGet, ns: "ip", key: "a"})[lenSize:], tcp).status, statusDenied},
	}
	for _, st := range steps {
		if st.got != st.want {
			t.Errorf("%s: status %d, want %d", st.name, st.got, st.want)
		}
	}
}

// tcpUID is the uid the test's "tcp" connects as: 103 when the test runs
// as root (dialAs switches to it), else the test's own.
func tcpUID() uint32 {
	if os.Geteuid() == 0 {
		return 103
	}
	return uint32(os.Geteuid())
}

// dialAs connects to the store at path as uid: as root it switches its
// effective uid for the connect, since SO_PEERCRED records the connecting
// process's credentials. As anyone else it must be uid already.
func dialAs(t *testing.T, path string, uid uint32) net.Conn {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := syscall.Setreuid(-1, int(uid)); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := syscall.Setreuid(-1, 0); err != nil {
				panic(err) // the other tests would run as uid
			}
		}()
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The server knows its callers by SO_PEERCRED: a connection from tcp's uid
// reads and writes tcp's pairs but not sshd's host key, and is closed once
// idle.
func TestPeerCredentials(t *testing.T) {
	path := sockPath(t)
	// Let the test's tcp reach the socket through t.TempDir's private
	// directories.
	for dir := filepath.Dir(path); dir != os.TempDir(); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755)
	}
	a := testAccess()
	uid := tcpUID()
	a.Names = func(u uint32) (string, bool) { return "tcp", u == uid }
	srv := newServer(1, MaxBytes, WithAccess(a), WithIdleTimeout(500*time.Millisecond))
	srv.put("sshd", "hostkey", []byte("secret"), caller{known: true})
	startServer(t, path, srv)

	c := dialAs(t, path, uid)
	rd := bufio.NewReader(c)
	for i, step := range []struct {
		req  request
		want status
	}{
		{request{id: 1, op: opPut, ns: "tcp", key: "listener", value: []byte("80")}, statusOK},
		{request{id: 2, op: opGet, ns: "tcp", key: "listener"}, statusOK},
		{request{id: 3, op: opGet, ns: "sshd", key: "hostkey"}, statusDenied},
		{request{id: 4, op: opList, ns: "sshd"}, statusDenied},
	} {
		rep, err := exchange(t, c, rd, appendRequest(nil, &step.req))
		if err != nil || rep.status != step.want {
			t.Errorf("step %d: %v %s/%s as uid %d: status %d (%s), %v; want %d", i, step.req.op, step.req.ns, step.req.key, uid, rep.status, rep.payload, err, step.want)
		}
		if rep.status == statusDenied && strings.Contains(string(rep.payload), "secret") {
			t.Errorf("step %d: the refusal carries the secret: %q", i, rep.payload)
		}
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := rd.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("read from a connection idle for longer than the timeout: %v, want %v (closed by the server)", err, io.EOF)
	}
}

// A client whose idle connection the server closed reconnects and goes on,
// with nothing replayed or lost.
func TestIdleClose(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, newServer(1, MaxBytes, WithIdleTimeout(50*time.Millisecond)))
	c := Dial(path, fast...)
	defer c.Close()
	ctx := context.Background()
	for i, v := range []string{"1", "2", "3"} {
		if err := c.Put(ctx, "tcp", "k", []byte(v)); err != nil {
			t.Fatalf("Put #%d after an idle close: %v", i, err)
		}
		if got, ok, err := c.Get(ctx, "tcp", "k"); err != nil || !ok || string(got) != v {
			t.Fatalf("Get #%d after an idle close = %q, %v, %v; want %q", i, got, ok, err, v)
		}
		time.Sleep(200 * time.Millisecond) // the server hangs up meanwhile
	}
}
