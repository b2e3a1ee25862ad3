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
