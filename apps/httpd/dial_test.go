package httpd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http/httptest"
	"testing"

	"keepnet/apps/splitmix"
)

// /fetch GETs a URL through Config.Dial and reports its body's length and
// hash and the connection's ends; with send it POSTs splitmix bytes.
// Without Config.Dial there is no such route.
func TestFetch(t *testing.T) {
	far := httptest.NewServer(New(Config{Stack: "linux"}))
	defer far.Close()
	srv := httptest.NewServer(New(Config{Stack: "linux", Dial: new(net.Dialer).DialContext}))
	defer srv.Close()
	fetch := func(query string) fetchResult {
		t.Helper()
		resp, body := do(t, "GET", srv.URL+"/fetch?"+query, nil)
		var r fetchResult
		if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != 200 {
			t.Fatalf("/fetch?%s: %d %q", query, resp.StatusCode, body)
		}
		return r
	}
	want := sha256.New()
	io.Copy(want, io.LimitReader(splitmix.New(9), 100_000))
	r := fetch("url=" + far.URL + "/bytes?n=100000%26seed=9")
	if !r.OK || r.Status != 200 || r.Bytes != 100_000 || r.SHA256 != hex.EncodeToString(want.Sum(nil)) || r.Body != "" ||
		r.Remote != far.Listener.Addr().String() || r.Local == "" {
		t.Errorf("/fetch of 100,000 bytes = %+v, want them with sha256 %x from %v", r, want.Sum(nil), far.Listener.Addr())
	}
	r = fetch("url=" + far.URL + "/sink&send=5000&seed=3")
	var sink struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	sent := sha256.New()
	io.Copy(sent, io.LimitReader(splitmix.New(3), 5000))
	if err := json.Unmarshal([]byte(r.Body), &sink); err != nil || !r.OK || sink.Bytes != 5000 || sink.SHA256 != hex.EncodeToString(sent.Sum(nil)) {
		t.Errorf("/fetch POSTing 5,000 bytes = %+v (%v), want the sink to have got them", r, err)
	}
	if r := fetch("url=http://127.0.0.1:1/"); r.OK || r.Error == "" {
		t.Errorf("/fetch from a closed port = %+v, want an error", r)
	}
	plain := httptest.NewServer(New(Config{Stack: "linux"}))
	defer plain.Close()
	if resp, _ := do(t, "GET", plain.URL+"/fetch?url="+far.URL, nil); resp.StatusCode != 404 {
		t.Errorf("/fetch without Dial: %d, want 404", resp.StatusCode)
	}
}
