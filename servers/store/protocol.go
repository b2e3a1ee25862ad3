package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DefaultPath is where the store listens inside the appliance: in a
// directory init gives the store's uid (it creates the socket there).
const DefaultPath = "/run/keepnet/store/store.sock"

// Limits of the protocol and of the store's memory.
const (
	MaxNamespace = 64       // bytes in a namespace
	MaxKey       = 256      // bytes in a key
	MaxValue     = 1 << 20  // bytes in a value
	MaxBytes     = 64 << 20 // total charge of all pairs, see entryCost
)

// entryOverhead is charged per pair on top of its bytes: map and slice
// headers, and the 16-byte request header a stored value may pin. It must stay
// above the 6 bytes of List framing per entry (see maxReplyBody).
const entryOverhead = 64

// entryCost is what one pair counts against MaxBytes.
func entryCost(ns, key string, value []byte) int64 {
	return int64(len(ns) + len(key) + len(value) + entryOverhead)
}

// Operations (request byte 8).
type op uint8

const (
	opHello  op = 1
	opPut    op = 2
	opGet    op = 3
	opDelete op = 4
	opList   op = 5
)

func (o op) String() string {
	switch o {
	case opHello:
		return "hello"
	case opPut:
		return "put"
	case opGet:
		return "get"
	case opDelete:
		return "delete"
	case opList:
		return "list"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Reply statuses (reply byte 16).
type status uint8

const (
	statusOK         status = 0
	statusNotFound   status = 1
	statusBadRequest status = 2
	statusTooLarge   status = 3
	statusFull       status = 4
	statusDenied     status = 5
)

// Errors a request can end with; the client wraps them in an *OpError.
var (
	ErrBadRequest = errors.New("bad request")
	ErrTooLarge   = errors.New("too large")
	ErrFull       = errors.New("store full")
	ErrProtocol   = errors.New("protocol error") // the peer broke the framing
)

// statusErr maps an error status to its error value.
func statusErr(s status) error {
	switch s {
	case statusBadRequest:
		return ErrBadRequest
	case statusTooLarge:
		return ErrTooLarge
	case statusFull:
		return ErrFull
	case statusDenied:
		return ErrDenied
	}
	return fmt.Errorf("%w: status %d", ErrProtocol, s)
}

// errStatus maps an error to the status the server replies with.
func errStatus(err error) status {
	switch {
	case errors.Is(err, ErrTooLarge):
		return statusTooLarge
	case errors.Is(err, ErrFull):
		return statusFull
	case errors.Is(err, ErrDenied):
		return statusDenied
	}
	return statusBadRequest
}

// Frame sizes.
const (
	lenSize           = 4
	requestHeaderSize = 16 // id 8, op 1, nsLen 1, keyLen 2, valLen 4
	replyHeaderSize   = 17 // id 8, epoch 8, status 1
	listHeaderSize    = 4  // count
	listEntryHeader   = 6  // keyLen 2, valLen 4
	maxMessage        = 256

	maxRequestBody = requestHeaderSize + MaxNamespace + MaxKey + MaxValue
	// Every entry is charged entryOverhead ≥ listEntryHeader, so a List of
	// everything fits in MaxBytes.
	maxReplyBody = replyHeaderSize + listHeaderSize + MaxBytes
)

// request is one decoded request. value aliases the frame it came from.
type request struct {
	id    uint64
	op    op
	ns    string
	key   string
	value []byte
}

// validate checks the limits and which fields op uses. Decoded and
// client-built requests both pass through it.
func (r *request) validate() error {
	if len(r.ns) > MaxNamespace {
		return fmt.Errorf("%w: namespace is %d bytes, limit %d", ErrTooLarge, len(r.ns), MaxNamespace)
	}
	if len(r.key) > MaxKey {
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrTooLarge, len(r.key), MaxKey)
	}
	if len(r.value) > MaxValue {
		return fmt.Errorf("%w: value is %d bytes, limit %d", ErrTooLarge, len(r.value), MaxValue)
	}
	var wantNS, wantKey, wantValue bool
	switch r.op {
	case opHello:
	case opPut:
		wantNS, wantKey, wantValue = true, true, true
	case opGet, opDelete:
		wantNS, wantKey = true, true
	case opList:
		wantNS = true
	default:
		return fmt.Errorf("%w: unknown operation %d", ErrBadRequest, uint8(r.op))
	}
	switch {
	case wantNS != (r.ns != ""):
		return fmt.Errorf("%w: %v with namespace %q", ErrBadRequest, r.op, r.ns)
	case wantKey != (r.key != ""):
		return fmt.Errorf("%w: %v with key %q", ErrBadRequest, r.op, r.key)
	case !wantValue && len(r.value) != 0:
		return fmt.Errorf("%w: %v with a value", ErrBadRequest, r.op)
	}
	return nil
}

// decodeRequest parses a request body (the bytes after the length). The
// returned value aliases b. Errors wrap ErrBadRequest or ErrTooLarge.
func decodeRequest(b []byte) (request, error) {
	if len(b) < requestHeaderSize {
		return request{}, fmt.Errorf("%w: %d-byte request, header is %d", ErrBadRequest, len(b), requestHeaderSize)
	}
	r := request{id: binary.BigEndian.Uint64(b[0:8]), op: op(b[8])}
	nsLen := int(b[9])
	keyLen := int(binary.BigEndian.Uint16(b[10:12]))
	valLen := binary.BigEndian.Uint32(b[12:16])
	if valLen > MaxValue {
		return r, fmt.Errorf("%w: value is %d bytes, limit %d", ErrTooLarge, valLen, MaxValue)
	}
	if want := requestHeaderSize + nsLen + keyLen + int(valLen); len(b) != want {
		return r, fmt.Errorf("%w: %d-byte request, lengths say %d", ErrBadRequest, len(b), want)
	}
	p := b[requestHeaderSize:]
	r.ns, p = string(p[:nsLen]), p[nsLen:]
	r.key, p = string(p[:keyLen]), p[keyLen:]
	r.value = p
	return r, r.validate()
}

// appendRequest appends r's whole frame, length included.
func appendRequest(dst []byte, r *request) []byte {
	n := requestHeaderSize + len(r.ns) + len(r.key) + len(r.value)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = binary.BigEndian.AppendUint64(dst, r.id)
	dst = append(dst, byte(r.op), byte(len(r.ns)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.key)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.value)))
	dst = append(dst, r.ns...)
	dst = append(dst, r.key...)
	return append(dst, r.value...)
}

// reply is one decoded reply. payload aliases the frame it came from.
type reply struct {
	id      uint64
	epoch   uint64
	status  status
	payload []byte
}

// err is the error a failed reply stands for: the status's error, with the
// server's words after it (without repeating the status's own).
func (r reply) err() error {
	e := statusErr(r.status)
	return fmt.Errorf("%w: %s", e, strings.TrimPrefix(string(r.payload), e.Error()+": "))
}

// decodeReply parses a reply body. Errors wrap ErrProtocol.
func decodeReply(b []byte) (reply, error) {
	if len(b) < replyHeaderSize {
		return reply{}, fmt.Errorf("%w: %d-byte reply, header is %d", ErrProtocol, len(b), replyHeaderSize)
	}
	r := reply{
		id:      binary.BigEndian.Uint64(b[0:8]),
		epoch:   binary.BigEndian.Uint64(b[8:16]),
		status:  status(b[16]),
		payload: b[replyHeaderSize:],
	}
	switch r.status {
	case statusOK:
	case statusNotFound:
		if len(r.payload) != 0 {
			return r, fmt.Errorf("%w: not-found reply with %d-byte payload", ErrProtocol, len(r.payload))
		}
	case statusBadRequest, statusTooLarge, statusFull, statusDenied:
		if len(r.payload) > maxMessage {
			return r, fmt.Errorf("%w: %d-byte error message", ErrProtocol, len(r.payload))
		}
	default:
		return r, fmt.Errorf("%w: unknown status %d", ErrProtocol, r.status)
	}
	return r, nil
}

// replyHeader returns r's length and header; the payload follows on the wire.
func replyHeader(r *reply) []byte {
	h := make([]byte, 0, lenSize+replyHeaderSize)
	h = binary.BigEndian.AppendUint32(h, uint32(replyHeaderSize+len(r.payload)))
	h = binary.BigEndian.AppendUint64(h, r.id)
	h = binary.BigEndian.AppendUint64(h, r.epoch)
	return append(h, byte(r.status))
}

// KV is one key/value pair of a namespace.
type KV struct {
	Key   string
	Value []byte
}

// appendList encodes a List payload; kvs must be sorted by key.
func appendList(dst []byte, kvs []KV) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(kvs)))
	for _, kv := range kvs {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(kv.Key)))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(kv.Value)))
		dst = append(dst, kv.Key...)
		dst = append(dst, kv.Value...)
	}
	return dst
}

// decodeList parses a List payload, checking every limit and the key order.
// The values alias p.
func decodeList(p []byte) ([]KV, error) {
	if len(p) < listHeaderSize {
		return nil, fmt.Errorf("%w: %d-byte list", ErrProtocol, len(p))
	}
	count := binary.BigEndian.Uint32(p)
	p = p[listHeaderSize:]
	if uint64(count)*listEntryHeader > uint64(len(p)) {
		return nil, fmt.Errorf("%w: list of %d entries in %d bytes", ErrProtocol, count, len(p))
	}
	kvs := make([]KV, 0, count)
	for i := range count {
		if len(p) < listEntryHeader {
			return nil, fmt.Errorf("%w: list entry %d truncated", ErrProtocol, i)
		}
		keyLen := int(binary.BigEndian.Uint16(p))
		valLen := binary.BigEndian.Uint32(p[2:])
		p = p[listEntryHeader:]
		if keyLen == 0 || keyLen > MaxKey || valLen > MaxValue || uint64(keyLen)+uint64(valLen) > uint64(len(p)) {
			return nil, fmt.Errorf("%w: list entry %d: key %d, value %d bytes, %d left", ErrProtocol, i, keyLen, valLen, len(p))
		}
		kv := KV{Key: string(p[:keyLen]), Value: p[keyLen : keyLen+int(valLen) : keyLen+int(valLen)]}
		p = p[keyLen+int(valLen):]
		if i > 0 && kv.Key <= kvs[i-1].Key {
			return nil, fmt.Errorf("%w: list entry %d: key %q not after %q", ErrProtocol, i, kv.Key, kvs[i-1].Key)
		}
		kvs = append(kvs, kv)
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the list", ErrProtocol, len(p))
	}
	return kvs, nil
}

// errFrameTooLarge is returned by readFrame for a length above its limit;
// nothing of the body has been read, so the stream is lost.
var errFrameTooLarge = errors.New("frame too large")

// readFrame reads one length-prefixed frame of at most max body bytes.
func readFrame(r *bufio.Reader, max int) ([]byte, error) {
	var h [lenSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}
