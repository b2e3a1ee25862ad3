package itest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"keepnet/apps/splitmix"
)

// A transfer fails when it stalls: curl gives up when less than
// stallBytes a second came for stallTime (minutes: on a host that drops
// frames at its tap queue, TCP's retransmission back-off alone can leave a
// healthy connection silent for a minute). Beyond that it may take a minute
// plus its size at floorMbps (for the ordinary ones: about what a stall
// is), but never past two minutes before the test's own deadline
// (transferLimit): a host busy with other guests gave 2.4 Mbit/s through
// the relay where a quiet one gives 250. Its rate is BenchmarkTCPBulk's
// figure, not the test's.
const (
	floorMbps  = 1
	stallBytes = 100_000
	stallTime  = 3 * time.Minute
)

// transferLimit is how long size bytes may take at floor Mbit/s, but no
// longer than until two minutes before the test's deadline (go test -timeout):
// a test that overruns that is killed without its cleanups, leaving its
// QEMU and namespace behind.
func transferLimit(t testing.TB, size int64, floor float64) time.Duration {
	limit := time.Minute + time.Duration(float64(size)*8/(floor*1e6)*float64(time.Second))
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok {
			limit = min(limit, time.Until(end)-2*time.Minute)
		}
	}
	return max(limit, 10*time.Second)
}

// curlArgs are curl's flags for a transfer that may take limit.
func curlArgs(limit time.Duration) []string {
	return []string{"-sS", "--fail", "--max-time", strconv.Itoa(int(limit.Seconds())),
		"--speed-limit", strconv.Itoa(stallBytes), "--speed-time", strconv.Itoa(int(stallTime.Seconds()))}
}

// httpTransfer downloads /bytes?n=size from the appliance with curl in the
// namespace and checks its SHA-256, then uploads upload bytes to /sink and
// checks the hash the appliance computed; it returns both throughputs in
// Mbit/s.
func httpTransfer(t testing.TB, n *netns, size, upload int64) (down, up float64) {
	t.Helper()
	httpWarm(t, n)
	return httpDownload(t, n, size, 5, floorMbps), httpUpload(t, n, upload, 6, floorMbps)
}

// httpWarm makes a first small request, so that the figures measure the
// transfer, not a fresh link (the first frames after boot may wait out the
// emulated NIC's receive pause and a SYN retransmission).
func httpWarm(t testing.TB, n *netns) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := n.exec(ctx, nil, "curl", "-sS", "--fail", "--retry", "3", "--max-time", "30", "-o", "/dev/null", "http://"+n.GuestIP+"/bytes?n=1"); err != nil {
		t.Fatal(err)
	}
}

// httpDownload has curl in the namespace fetch /bytes?n=size&seed=seed,
// compares every byte with the splitmix stream as it arrives and checks
// the SHA-256 of what came; it returns the rate in Mbit/s. It waits at most
// transferLimit(t, size, floor).
func httpDownload(t testing.TB, n *netns, size int64, seed uint64, floor float64) float64 {
	t.Helper()
	limit := transferLimit(t, size, floor)
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/bytes?n=%d&seed=%d", n.GuestIP, size, seed)
	cmd := exec.CommandContext(ctx, "ip", append(append([]string{"netns", "exec", n.Name, "curl"}, curlArgs(limit)...), url)...)
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h, check := sha256.New(), newSplitCheck(seed)
	_, copyErr := io.Copy(io.MultiWriter(h, check), stdout)
	err = cmd.Wait()
	elapsed := time.Since(start)
	if err != nil || copyErr != nil {
		t.Fatalf("curl %s: %v, %v after %v and %d bytes (first wrong byte at %d): %s",
			url, err, copyErr, elapsed.Round(time.Millisecond), check.n, check.bad, stderr.Bytes())
	}
	if check.n != size || check.bad >= 0 {
		t.Fatalf("/bytes?n=%d&seed=%d: %d bytes came, the first wrong one at offset %d (-1: none); want %d bytes of splitmix(%d)",
			size, seed, check.n, check.bad, size, seed)
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(splitmix.New(seed), size))
	if got := h.Sum(nil); !bytes.Equal(got, want.Sum(nil)) {
		t.Fatalf("sha256 of /bytes?n=%d&seed=%d = %x, want %x", size, seed, got, want.Sum(nil))
	}
	return float64(size) * 8 / elapsed.Seconds() / 1e6
}

// httpUpload writes size bytes of splitmix(seed) to a file, has curl in the
// namespace PUT it to /sink and checks the length and SHA-256 the appliance
// answers; it returns the rate in Mbit/s. It waits at most
// transferLimit(t, size, floor).
func httpUpload(t testing.TB, n *netns, size int64, seed uint64, floor float64) float64 {
	t.Helper()
	// The upload is generated in the namespace (head -c of a splitmix file
	// would need the bytes twice): hash a file written once. curl -T
	// streams it rather than reading it into memory first.
	file := filepath.Join(t.TempDir(), "upload")
	defer os.Remove(file)
	h := sha256.New()
	if err := writeSplitmix(file, seed, size, h); err != nil {
		t.Fatal(err)
	}
	limit := transferLimit(t, size, floor)
	ctx, cancel := context.WithTimeout(context.Background(), limit+30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := n.exec(ctx, nil, "curl", append(curlArgs(limit), "-T", file, "http://"+n.GuestIP+"/sink")...)
	if err != nil {
		t.Fatalf("upload of %d bytes after %v: %v", size, time.Since(start).Round(time.Millisecond), err)
	}
	up := float64(size) * 8 / time.Since(start).Seconds() / 1e6
	var sink struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(out, &sink); err != nil || sink.Bytes != size || sink.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("/sink answered %s (%v), want %d bytes and sha256 %x", out, err, size, h.Sum(nil))
	}
	return up
}

// keepnet's own TCP: curl downloads 50 MB and uploads 25 MB through e1000.0,
// ip, tcp, syscall and the HTTP app, with the hashes checked (gigabytes are
// make bench's: BenchmarkTCPBulk); the OpenSSH client
// runs a command; a kill of tcp keeps the listeners (new connections are
// accepted after it).
func TestTCPKeepnet(t *testing.T) {
	requireITest(t, true)
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet", "--authorized-keys", key+".pub")...)

	const down, up = 50_000_000, 25_000_000
	dr, ur := httpTransfer(t, n, down, up)
	t.Logf("keepnet TCP: download %s at %.0f Mbit/s, upload %s at %.0f Mbit/s, hashes match", mb(down), dr, mb(up), ur)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := n.exec(ctx, nil, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "ConnectTimeout=30", "-o", "LogLevel=ERROR", "root@"+n.GuestIP, "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Errorf("ssh appliance echo hello over keepnet's TCP = %q, %v; want hello", out, err)
	}

	// The listeners come back from the store: a new connection is accepted
	// (how soon is BenchmarkRecovery's figure).
	d, err := n.acceptAfterKill(t, a, 10*time.Second, resumeWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a new connection accepted %v after the kill of tcp", d.Round(time.Millisecond))
}

// A SYN flood of 50,000 SYNs from addresses nobody holds, while a download
// runs: the download completes with its hash, the tcp server's memory stays
// bounded, and malformed segments (bad checksum, bad data offset, bogus
// option) are dropped and counted.
func TestTCPSynFlood(t *testing.T) {
	requireITest(t, true)
	n := newNetns(t)
	a := boot(t, n.Name, append(n.upArgs(), "--stack", "keepnet")...)
	httpTransfer(t, n, 1000, 1000) // warm: ARP, the link, the listener
	before := a.waitStats("tcp", func(m map[string]any) bool { return num(m, "InSegs") > 0 })
	nicBefore := a.stats("e1000.0")
	tapDrops := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, _ := n.exec(ctx, nil, "cat", "/sys/class/net/"+n.Tap+"/statistics/tx_dropped")
		v, _ := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		return v
	}
	tapBefore := tapDrops()
	rss := map[string]int{}
	stBefore := a.status()
	for _, c := range stBefore.Components {
		rss[c.Name] = c.RSSKiB
	}
	restarts := restartsOf(stBefore)

	const syns = 50000
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	mac, err := n.exec(ctx, nil, "sh", "-c", "ip neigh show "+n.GuestIP+" | awk '{print $5}'")
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	// The download starts first (its connection is established before
	// the flood: a bounded SYN queue that drops the oldest half-open
	// connection protects established ones, not new ones during a flood).
	const size = 60_000_000
	h := sha256.New()
	io.Copy(h, io.LimitReader(splitmix.New(3), size))
	type result struct {
		out []byte
		err error
	}
	download := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := n.exec(ctx, nil, "sh", "-c", fmt.Sprintf("curl -sS --fail --max-time 480 'http://%s/bytes?n=%d&seed=3' | sha256sum", n.GuestIP, size))
		download <- result{out, err}
	}()
	// Not a fixed sleep: a loaded host may take longer to get curl going.
	for deadline := time.Now().Add(resumeWait); ; time.Sleep(50 * time.Millisecond) {
		out, _ := n.exec(ctx, nil, "ss", "-tnH", "state", "established", "dport = :80")
		if len(strings.TrimSpace(string(out))) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the download's connection not established within %v", resumeWait)
		}
	}
	cmd := fmt.Sprintf("RAW_KIND=syn RAW_IFACE=%s RAW_DST_MAC=%s RAW_SRC_IP=%s RAW_DST_IP=%s RAW_ROUNDS=%d %s -test.run='^TestHelperRawFrames$' -test.v",
		n.Tap, strings.TrimSpace(string(mac)), n.HostIP, n.GuestIP, syns, self)
	if out, err := n.exec(ctx, nil, "sh", "-c", cmd); err != nil {
		t.Fatalf("SYN flood sender: %v\n%s", err, out)
	}
	flooded := time.Since(start)
	r := <-download
	if r.err != nil {
		t.Fatalf("the download during the flood: %v", r.err)
	}
	if got := strings.Fields(string(r.out)); len(got) == 0 || got[0] != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("sha256 of the download during the flood = %q, want %x", r.out, h.Sum(nil))
	}
	t.Logf("%d MB downloaded in %v, during a flood of %d SYNs (sent in the first %v)", size/1_000_000, time.Since(start).Round(time.Millisecond), syns, flooded.Round(time.Millisecond))

	after := a.waitStats("tcp", func(m map[string]any) bool {
		return num(m, "InBadChecksum")-num(before, "InBadChecksum") >= syns/100 &&
			num(m, "InBadOffset")-num(before, "InBadOffset") >= syns/100 &&
			num(m, "InBadOptions")-num(before, "InBadOptions") >= syns/100
	})
	// Frames the NIC itself dropped for want of a buffer (the flood and
	// the download compete for it) are counted there: each kind may be
	// short by at most that many.
	device := func(m map[string]any) float64 {
		d, _ := m["Device"].(map[string]any)
		return num(d, "RxMissed") + num(d, "RxNoBuffer")
	}
	slack := device(a.stats("e1000.0")) - device(nicBefore)
	tapSlack := tapDrops() - tapBefore
	t.Logf("frames dropped for want of a buffer: %v by the NIC, %v by the host's tap queue", slack, tapSlack)
	slack += tapSlack
	for _, c := range []string{"InBadChecksum", "InBadOffset", "InBadOptions"} {
		if d := num(after, c) - num(before, c); d < syns/100-slack {
			t.Errorf("tcp counter %s grew by %v, want %d (less the %v frames the NIC dropped)", c, d, syns/100, slack)
		}
	}
	t.Logf("tcp during the flood: SYN evictions %v, SYN drops %v, connections now %v",
		num(after, "InSynEvictions")-num(before, "InSynEvictions"), num(after, "InSynDrops")-num(before, "InSynDrops"), after["Conns"])
	if num(after, "Conns") > 300 {
		t.Errorf("tcp holds %v connections after the flood, want the SYN queue's bound", after["Conns"])
	}
	for _, c := range a.status().Components {
		if c.Restarts != restarts[c.Name] {
			t.Errorf("%s restarted during the flood: %+v (%d restarts before)", c.Name, c, restarts[c.Name])
		}
		if b := rss[c.Name]; b > 0 && c.RSSKiB > b+32768 {
			t.Errorf("%s resident memory grew from %d KiB to %d KiB", c.Name, b, c.RSSKiB)
		}
	}
}
