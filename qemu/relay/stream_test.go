package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// chunks is a reader returning at most the next of sizes bytes per Read
// (cycling), to split frames at every possible place.
type chunks struct {
	data  []byte
	sizes []int
	i     int
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), max(c.sizes[c.i%len(c.sizes)], 1))
	c.i++
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// decodeAll reads frames from rd until an error; it copies each frame.
func decodeAll(rd io.Reader) (frames [][]byte, err error) {
	s := NewStreamReader(0)
	for {
		rerr := s.Fill(rd)
		for {
			f, err := s.Next()
			if err != nil {
				return frames, err
			}
			if f == nil {
				break
			}
			frames = append(frames, bytes.Clone(f))
		}
		if rerr == io.EOF && s.Buffered() > 0 {
			return frames, io.ErrUnexpectedEOF
		}
		if rerr != nil {
			return frames, rerr
		}
	}
}

func be32(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestStreamReader(t *testing.T) {
	arp := bytes.Repeat([]byte{0xa5}, 42)
	big := bytes.Repeat([]byte{0x5a}, MaxFrame)
	var two []byte
	two = AppendFrame(two, arp)
	two = AppendFrame(two, []byte{1, 2, 3})
	for _, tc := range []struct {
		name    string
		stream  []byte
		want    [][]byte
		wantErr error
	}{
		{"empty", nil, nil, io.EOF},
		{"one frame", AppendFrame(nil, arp), [][]byte{arp}, io.EOF},
		{"two frames", two, [][]byte{arp, {1, 2, 3}}, io.EOF},
		{"largest frame", AppendFrame(nil, big), [][]byte{big}, io.EOF},
		{"cut in the prefix", append(AppendFrame(nil, arp), 0, 0), [][]byte{arp}, io.ErrUnexpectedEOF},
		{"cut in the frame", AppendFrame(nil, arp)[:20], nil, io.ErrUnexpectedEOF},
		{"zero length", append(be32(0), 1, 2), nil, ErrFrameLength},
		{"one past the largest", append(be32(MaxFrame+1), big...), nil, ErrFrameLength},
		{"huge after a good frame", append(AppendFrame(nil, arp), be32(0xffffffff)...), [][]byte{arp}, ErrFrameLength},
	} {
		for _, split := range [][]int{{1 << 20}, {1}, {3, 1, 7}, {4}, {46}} {
			got, err := decodeAll(&chunks{data: tc.stream, sizes: split})
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s, reads of %v: error %v, want %v", tc.name, split, err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s, reads of %v: %d frames, want %d", tc.name, split, len(got), len(tc.want))
			}
		}
	}
	var fe *FrameLengthError
	if _, err := decodeAll(bytes.NewReader(be32(70000))); !errors.As(err, &fe) || fe.Len != 70000 {
		t.Errorf("length 70000: error %v, want a FrameLengthError{70000}", err)
	}
}

// A reader that times out mid-frame keeps the partial frame for the next
// Fill.
func TestStreamReaderKeepsPartialFrameAcrossErrors(t *testing.T) {
	frame := AppendFrame(nil, []byte("hello, ethernet"))
	s := NewStreamReader(0)
	if err := s.Fill(&errAfter{data: frame[:6], err: errTimeout}); err != errTimeout {
		t.Fatalf("Fill = %v, want the timeout", err)
	}
	if f, err := s.Next(); f != nil || err != nil {
		t.Fatalf("Next after a partial frame = %q, %v; want nothing yet", f, err)
	}
	s.Fill(bytes.NewReader(frame[6:]))
	if f, err := s.Next(); string(f) != "hello, ethernet" || err != nil {
		t.Fatalf("Next = %q, %v; want the frame", f, err)
	}
}

var errTimeout = errors.New("timeout")

type errAfter struct {
	data []byte
	err  error
}

func (e *errAfter) Read(p []byte) (int, error) { return copy(p, e.data), e.err }

// FuzzStreamReader: however the stream is cut into reads, the decoder finds
// the frames a direct reading of the format finds, and re-encoding them
// gives back the bytes they came from.
func FuzzStreamReader(f *testing.F) {
	f.Add(AppendFrame(AppendFrame(nil, []byte("abc")), []byte("de")), uint8(1), uint8(3))
	f.Add(be32(0), uint8(2), uint8(2))
	f.Add(be32(MaxFrame+1), uint8(5), uint8(1))
	f.Add(append(be32(5), 1, 2), uint8(0), uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		got, err := decodeAll(&chunks{data: data, sizes: []int{int(a), int(b)}})
		// The reference: walk the format by hand.
		var want [][]byte
		var wantErr error = io.EOF
		rest := data
		for len(rest) > 0 {
			if len(rest) < HeaderLen {
				wantErr = io.ErrUnexpectedEOF
				break
			}
			n := binary.BigEndian.Uint32(rest)
			if n == 0 || n > MaxFrame {
				wantErr = ErrFrameLength
				break
			}
			if uint64(len(rest)-HeaderLen) < uint64(n) {
				wantErr = io.ErrUnexpectedEOF
				break
			}
			want = append(want, rest[HeaderLen:HeaderLen+n])
			rest = rest[HeaderLen+n:]
		}
		if !errors.Is(err, wantErr) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d", len(got), len(want))
		}
		var re []byte
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("frame %d differs", i)
			}
			re = AppendFrame(re, got[i])
		}
		if !bytes.HasPrefix(data, re) {
			t.Fatalf("re-encoded frames are not the stream's prefix")
		}
	})
}
