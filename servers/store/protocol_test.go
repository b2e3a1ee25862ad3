package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// body returns the request body (no length prefix) of r.
func body(r request) []byte { return appendRequest(nil, &r)[lenSize:] }

func TestDecodeRequest(t *testing.T) {
	long := func(n int) string { return strings.Repeat("k", n) }
	tests := []struct {
		name    string
		in      []byte
		want    request
		wantErr error
	}{
		{"hello", body(request{id: 1, op: opHello}), request{id: 1, op: opHello}, nil},
		{"put", body(request{id: 2, op: opPut, ns: "ip", key: "addr", value: []byte("10.0.2.15")}),
			request{id: 2, op: opPut, ns: "ip", key: "addr", value: []byte("10.0.2.15")}, nil},
		{"put empty value", body(request{id: 3, op: opPut, ns: "ip", key: "k"}), request{id: 3, op: opPut, ns: "ip", key: "k", value: []byte{}}, nil},
		{"get", body(request{id: 4, op: opGet, ns: "ip", key: "k"}), request{id: 4, op: opGet, ns: "ip", key: "k", value: []byte{}}, nil},
		{"list", body(request{id: 5, op: opList, ns: "tcp"}), request{id: 5, op: opList, ns: "tcp", value: []byte{}}, nil},
		{"max sizes", body(request{id: 6, op: opPut, ns: long(MaxNamespace), key: long(MaxKey), value: make([]byte, MaxValue)}),
			request{id: 6, op: opPut, ns: long(MaxNamespace), key: long(MaxKey), value: make([]byte, MaxValue)}, nil},

		{"empty", nil, request{}, ErrBadRequest},
		{"short header", []byte{0, 0, 0, 0, 0, 0, 0, 1, 1}, request{}, ErrBadRequest},
		{"unknown op", body(request{id: 7, op: 9, ns: "ip"}), request{}, ErrBadRequest},
		{"op zero", body(request{id: 7, op: 0}), request{}, ErrBadRequest},
		{"hello with namespace", body(request{op: opHello, ns: "ip"}), request{}, ErrBadRequest},
		{"put without namespace", body(request{op: opPut, key: "k"}), request{}, ErrBadRequest},
		{"put without key", body(request{op: opPut, ns: "ip"}), request{}, ErrBadRequest},
		{"get with value", body(request{op: opGet, ns: "ip", key: "k", value: []byte("x")}), request{}, ErrBadRequest},
		{"list with key", body(request{op: opList, ns: "ip", key: "k"}), request{}, ErrBadRequest},
		{"body longer than lengths", append(body(request{op: opGet, ns: "ip", key: "k"}), 0), request{}, ErrBadRequest},
		{"body shorter than lengths", body(request{op: opGet, ns: "ip", key: "k"})[:requestHeaderSize+2], request{}, ErrBadRequest},
		{"namespace too long", body(request{op: opList, ns: long(MaxNamespace + 1)}), request{}, ErrTooLarge},
		{"key too long", body(request{op: opGet, ns: "ip", key: long(MaxKey + 1)}), request{}, ErrTooLarge},
		{"value too long", body(request{op: opPut, ns: "ip", key: "k", value: make([]byte, MaxValue+1)}), request{}, ErrTooLarge},
		{"value length huge, no value", func() []byte {
			b := body(request{op: opPut, ns: "ip", key: "k"})
			binary.BigEndian.PutUint32(b[12:], 0xffffffff)
			return b
		}(), request{}, ErrTooLarge},
	}
	for _, tt := range tests {
		got, err := decodeRequest(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: decodeRequest() error = %v, want %v", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: decodeRequest() error = %v, want nil", tt.name, err)
			continue
		}
		if got.id != tt.want.id || got.op != tt.want.op || got.ns != tt.want.ns || got.key != tt.want.key || !bytes.Equal(got.value, tt.want.value) {
			t.Errorf("%s: decodeRequest() = {%d %v %q %q %d bytes}, want {%d %v %q %q %d bytes}", tt.name,
				got.id, got.op, got.ns, got.key, len(got.value), tt.want.id, tt.want.op, tt.want.ns, tt.want.key, len(tt.want.value))
		}
	}
}

func TestListRoundTrip(t *testing.T) {
	tests := [][]KV{
		{},
		{{"a", []byte{}}},
		{{"a", []byte("1")}, {"b", []byte("22")}, {"listen:80", []byte("state=LISTEN")}},
	}
	for _, kvs := range tests {
		p := appendList(nil, kvs)
		got, err := decodeList(p)
		if err != nil {
			t.Errorf("decodeList(appendList(%q)) error = %v", kvs, err)
			continue
		}
		if len(got) != len(kvs) {
			t.Errorf("decodeList(appendList(%q)) = %q, want %q", kvs, got, kvs)
			continue
		}
		for i := range got {
			if got[i].Key != kvs[i].Key || !bytes.Equal(got[i].Value, kvs[i].Value) {
				t.Errorf("decodeList(appendList(%q)) = %q, want %q", kvs, got, kvs)
			}
		}
	}
	bad := map[string][]byte{
		"unsorted":      appendList(nil, []KV{{"b", nil}, {"a", nil}}),
		"duplicate":     appendList(nil, []KV{{"a", nil}, {"a", nil}}),
		"empty key":     appendList(nil, []KV{{"", nil}}),
		"trailing":      append(appendList(nil, []KV{{"a", nil}}), 0),
		"truncated":     appendList(nil, []KV{{"a", []byte("xyz")}})[:9],
		"count too big": {0xff, 0xff, 0xff, 0xff},
		"short":         {0, 0},
	}
	for name, p := range bad {
		if _, err := decodeList(p); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: decodeList(%x) error = %v, want %v", name, p, err, ErrProtocol)
		}
	}
}

// FuzzDecodeRequest checks the server's request decoder, and the server's
// handling of whatever it accepts: a decoded request re-encodes to exactly
// its input, a rejected one gets an error status, nothing panics.
func FuzzDecodeRequest(f *testing.F) {
	seeds := []request{
		{id: 1, op: opHello},
		{id: 2, op: opPut, ns: "ip", key: "addr", value: []byte("10.0.2.15/24")},
		{id: 3, op: opGet, ns: "ip", key: "addr"},
		{id: 4, op: opDelete, ns: "ip", key: "addr"},
		{id: 5, op: opList, ns: "ip"},
		{id: 6, op: 6, ns: "ip"},
		{id: 7, op: opGet, ns: "ip", key: "k", value: []byte("v")},
	}
	for _, r := range seeds {
		f.Add(body(r))
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	s := newServer(42, 4096)
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := decodeRequest(in)
		rep := s.handle(in, caller{})
		if rep.epoch != 42 {
			t.Fatalf("handle(%x).epoch = %d, want 42", in, rep.epoch)
		}
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("decodeRequest(%x) error = %v, want bad request or too large", in, err)
			}
			if rep.status != statusBadRequest && rep.status != statusTooLarge {
				t.Fatalf("handle(%x).status = %d for an invalid request (%v)", in, rep.status, err)
			}
			if len(rep.payload) > maxMessage {
				t.Fatalf("handle(%x) message is %d bytes, limit %d", in, len(rep.payload), maxMessage)
			}
			return
		}
		if err := req.validate(); err != nil {
			t.Fatalf("decodeRequest(%x) accepted an invalid request: %v", in, err)
		}
		if out := appendRequest(nil, &req)[lenSize:]; !bytes.Equal(out, in) {
			t.Fatalf("appendRequest(decodeRequest(%x)) = %x", in, out)
		}
		if rep.id != req.id {
			t.Fatalf("handle(%x).id = %d, want %d", in, rep.id, req.id)
		}
		if rep.status == statusBadRequest || rep.status == statusTooLarge {
			t.Fatalf("handle(%x).status = %d for a valid request", in, rep.status)
		}
		// Whatever the server answers, the client decoder must accept.
		b := append(replyHeader(&rep)[lenSize:], rep.payload...)
		got, err := decodeReply(b)
		if err != nil {
			t.Fatalf("decodeReply(handle(%x)) error = %v", in, err)
		}
		if req.op == opList && got.status == statusOK {
			if _, err := decodeList(got.payload); err != nil {
				t.Fatalf("decodeList(handle(%x)) error = %v", in, err)
			}
		}
	})
}

// FuzzDecodeReply checks the client's reply and list decoders on hostile input.
func FuzzDecodeReply(f *testing.F) {
	f.Add(replyHeader(&reply{id: 1, epoch: 2})[lenSize:])
	f.Add(append(replyHeader(&reply{id: 1, epoch: 2, payload: appendList(nil, []KV{{"a", []byte("1")}})})[lenSize:],
		appendList(nil, []KV{{"a", []byte("1")}})...))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 4, 'f', 'u', 'l', 'l'})
	f.Fuzz(func(t *testing.T, in []byte) {
		rep, err := decodeReply(in)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("decodeReply(%x) error = %v, want %v", in, err, ErrProtocol)
			}
			return
		}
		if out := append(replyHeader(&rep)[lenSize:], rep.payload...); !bytes.Equal(out, in) {
			t.Fatalf("encode(decodeReply(%x)) = %x", in, out)
		}
		kvs, err := decodeList(rep.payload)
		if err != nil {
			return
		}
		if out := appendList(nil, kvs); !bytes.Equal(out, rep.payload) {
			t.Fatalf("appendList(decodeList(%x)) = %x", rep.payload, out)
		}
	})
}
