package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// QEMU's stream netdev (net/stream.c, QEMU ≥ 7.2) carries one Ethernet frame
// as a 4-byte big-endian length followed by that many bytes:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         frame length                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Ethernet frame (length bytes) ...
const (
	// HeaderLen is the size of the length prefix.
	HeaderLen = 4
	// MaxFrame is the longest frame accepted: a 64 KiB frame (a tap's
	// largest read; QEMU's own receive buffer, NET_BUFSIZE, is 68 KiB).
	MaxFrame = 65536
)

// ErrFrameLength says a length prefix is 0 or above MaxFrame: the peer does
// not speak the stream framing or the stream is out of step, and nothing
// after it can be trusted.
var ErrFrameLength = errors.New("stream frame length out of range")

// FrameLengthError carries the offending length; it matches ErrFrameLength
// with errors.Is.
type FrameLengthError struct{ Len uint32 }

func (e *FrameLengthError) Error() string {
	return fmt.Sprintf("stream frame length %d out of range 1..%d", e.Len, MaxFrame)
}
func (e *FrameLengthError) Is(target error) bool { return target == ErrFrameLength }

// AppendFrame appends frame to dst with its length prefix.
func AppendFrame(dst, frame []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(frame)))
	return append(dst, frame...)
}

// StreamReader decodes the stream framing out of a byte stream it reads in
// large chunks, so one read system call usually yields many frames. The
// frames Next returns are views into its buffer, valid until the next Fill.
//
// Validation: Next checks the length prefix (1..MaxFrame) before it slices,
// and the buffer always has room for a whole maximal frame, so a valid
// length can always be completed by further Fills.
type StreamReader struct {
	buf  []byte
	r, w int // buf[r:w] holds bytes read but not yet returned
	err  error
}

// NewStreamReader returns a StreamReader with a buffer of size bytes
// (at least HeaderLen+MaxFrame).
func NewStreamReader(size int) *StreamReader {
	size = max(size, HeaderLen+MaxFrame)
	return &StreamReader{buf: make([]byte, size)}
}

// Fill reads once from rd, after making room. It returns rd's error, after
// which the frames completed by this read are still there for Next; a
// timeout leaves any partial frame in place for the next Fill. (At io.EOF,
// Buffered() > 0 once Next returns nil means the stream ended mid-frame.)
func (s *StreamReader) Fill(rd io.Reader) error {
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.r > 0 && len(s.buf)-s.w < HeaderLen+MaxFrame {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	n, err := rd.Read(s.buf[s.w:])
	s.w += n
	return err
}

// Next returns the next complete frame in the buffer, or nil when more bytes
// are needed. A length out of range is a *FrameLengthError, returned from
// then on.
func (s *StreamReader) Next() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.w-s.r < HeaderLen {
		return nil, nil
	}
	n := binary.BigEndian.Uint32(s.buf[s.r:])
	if n == 0 || n > MaxFrame {
		s.err = &FrameLengthError{Len: n}
		return nil, s.err
	}
	end := s.r + HeaderLen + int(n)
	if end > s.w {
		return nil, nil
	}
	f := s.buf[s.r+HeaderLen : end : end]
	s.r = end
	return f, nil
}

// Reset forgets what is buffered and any framing error: a new stream
// starts.
func (s *StreamReader) Reset() { s.r, s.w, s.err = 0, 0, nil }

// Buffered returns how many bytes are read but not yet returned as frames.
func (s *StreamReader) Buffered() int { return s.w - s.r }
