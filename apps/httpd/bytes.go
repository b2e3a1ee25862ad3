package httpd

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"keepnet/apps/splitmix"
)

// maxBytes is the largest n /bytes accepts: 1 TiB.
const maxBytes = 1 << 40

// copyBufSize is the buffer /bytes and /sink move data through. Large, so a
// transfer costs few system calls per megabyte.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { return new([copyBufSize]byte) }}

// serveBytes answers GET|HEAD /bytes?n=N&seed=S with exactly N bytes of
// splitmix.New(S).
func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, seed, err := parseBytesQuery(r.URL.Query())
	if err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	// writerOnly hides the ResponseWriter's ReadFrom, which would copy
	// through a 32 KiB buffer of its own instead of buf.
	io.CopyBuffer(writerOnly{w}, io.LimitReader(splitmix.New(seed), n), buf[:])
	// A copy error means the client went away; the status line is sent
	// already, so there is no one left to tell.
}

type writerOnly struct{ io.Writer }

// parseBytesQuery checks the parameters of /bytes: n required, decimal, in
// [0, maxBytes]; seed optional, a uint64 in decimal or 0x-prefixed hex.
func parseBytesQuery(q url.Values) (n int64, seed uint64, err error) {
	ns, ok := q["n"]
	if !ok {
		return 0, 0, fmt.Errorf("missing parameter n (the number of bytes, 0 to %d)", int64(maxBytes))
	}
	n, err = strconv.ParseInt(ns[0], 10, 64)
	if err != nil || n < 0 || n > maxBytes {
		return 0, 0, fmt.Errorf("n=%q: want a decimal number of bytes from 0 to %d", ns[0], int64(maxBytes))
	}
	if ss, ok := q["seed"]; ok {
		seed, err = parseSeed(ss[0])
		if err != nil {
			return 0, 0, fmt.Errorf("seed=%q: want a 64-bit unsigned number, decimal or 0x hex", ss[0])
		}
	}
	return n, seed, nil
}

// parseSeed accepts decimal or 0x hex, and nothing else: strconv's base 0
// would also read "010" as octal 8 and allow underscores.
func parseSeed(s string) (uint64, error) {
	if hex, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		return strconv.ParseUint(hex, 16, 64)
	}
	return strconv.ParseUint(s, 10, 64)
}

// sinkReply is the answer of /sink.
type sinkReply struct {
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// serveSink answers POST|PUT /sink: it reads the whole body, of any length,
// in constant memory and replies with its length and SHA-256.
func serveSink(w http.ResponseWriter, r *http.Request) {
	buf := copyBufs.Get().(*[copyBufSize]byte)
	defer copyBufs.Put(buf)
	sum := sha256.New()
	// sum is a plain io.Writer and the body has no WriteTo, so the copy
	// goes through buf.
	n, err := io.CopyBuffer(sum, r.Body, buf[:])
	if err != nil {
		http.Error(w, fmt.Sprintf("reading body after %d bytes: %v", n, err), http.StatusBadRequest)
		return
	}
	writeJSON(w, http.StatusOK, sinkReply{Bytes: n, SHA256: hex.EncodeToString(sum.Sum(nil))})
}

// writeJSON sends v as the whole response.
func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}
