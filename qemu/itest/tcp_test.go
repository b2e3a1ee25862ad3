package itest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"keepnet/apps/splitmix"
)

// httpTransfer downloads /bytes?n=size from the appliance with curl in the
// namespace and checks its SHA-256, then uploads upload bytes to /sink and
// checks the hash the appliance computed; it returns both throughputs in
// Mbit/s.
func httpTransfer(t testing.TB, n *netns, size, upload int64) (down, up float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	base := "http://" + n.GuestIP
	// A first small request, so that the figures measure the transfer,
	// not a fresh link (the first frames after boot may wait out the
	// emulated NIC's receive pause and a SYN retransmission).
	if _, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--retry", "3", "--max-time", "30", "-o", "/dev/null", base+"/bytes?n=1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := n.exec(ctx, nil, "sh", "-c", fmt.Sprintf("curl -sS --fail --max-time 500 '%s/bytes?n=%d&seed=5' | sha256sum", base, size))
	if err != nil {
		t.Fatal(err)
	}
	down = float64(size) * 8 / time.Since(start).Seconds() / 1e6
	h := sha256.New()
	io.Copy(h, io.LimitReader(splitmix.New(5), size))
	if got := strings.Fields(string(out)); len(got) == 0 || got[0] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("sha256 of /bytes?n=%d = %q, want %x", size, out, h.Sum(nil))
	}

	// The upload is generated in the namespace (head -c of a splitmix file
	// would need the bytes twice): hash a file written once.
	file := filepath.Join(t.TempDir(), "upload")
	h = sha256.New()
	if err := writeSplitmix(file, 6, upload, h); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out, err = n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", "500", "-X", "POST", "-H", "Expect:", "--data-binary", "@"+file, base+"/sink")
	if err != nil {
		t.Fatal(err)
	}
	up = float64(upload) * 8 / time.Since(start).Seconds() / 1e6
	var sink struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(out, &sink); err != nil || sink.Bytes != upload || sink.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("/sink answered %s (%v), want %d bytes and sha256 %x", out, err, upload, h.Sum(nil))
	}
	return down, up
}

// keepnet's own TCP: curl downloads and uploads through e1000.0, ip, tcp,
// syscall and the HTTP app, with the hashes checked; the OpenSSH client
// runs a command; a kill of tcp keeps the listeners (new connections are
// accepted within a second).
func TestTCPKeepnet(t *testing.T) {
	requireITest(t, true)
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--authorized-keys", key+".pub")...)

	down, up := httpTransfer(t, n, 100_000_000, 50_000_000)
	t.Logf("keepnet TCP: download 100 MB at %.0f Mbit/s, upload 50 MB at %.0f Mbit/s", down, up)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@"+n.GuestIP, "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Errorf("ssh appliance echo hello over keepnet's TCP = %q, %v; want hello", out, err)
	}

	if out, err := keepnet(ctx, "", "kill", "tcp", "--ctl", a.ctl); err != nil {
		t.Fatalf("keepnet kill tcp: %v\n%s", err, out)
	}
	killed := time.Now()
	for {
		_, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--max-time", "2", "-o", "/dev/null", "http://"+n.GuestIP+"/bytes?n=10")
		if err == nil {
			t.Logf("a new connection accepted %v after the kill of tcp", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("no connection accepted within 5s of killing tcp: %v", err)
		}
	}
	if d := time.Since(killed); d > time.Second {
		t.Errorf("the first new connection came %v after the kill, want within 1s", d)
	}
}
