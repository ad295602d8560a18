package p2p

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// Framing: every message is one frame, the unsigned varint (LEB128, as in
// encoding/binary.PutUvarint and the protobuf encoding spec) length of the
// protobuf encoding followed by that many bytes. This is the same framing as
// libp2p's go-msgio "varint" readers and protobuf's writeDelimitedTo.

// DefaultMaxFrame is the frame size limit used when none is given: 4 MiB.
const DefaultMaxFrame = 4 << 20

// maxVarintLen is the longest uvarint we accept for a length prefix.
const maxVarintLen = binary.MaxVarintLen64

// ErrFrameTooLarge is matched (errors.Is) by every *FrameTooLargeError.
var ErrFrameTooLarge = errors.New("frame too large")

// ErrMalformedFrame is matched (errors.Is) by every *MalformedFrameError.
var ErrMalformedFrame = errors.New("malformed frame")

// FrameTooLargeError reports a frame whose announced or encoded size exceeds
// the limit. Nothing past the length prefix has been read.
type FrameTooLargeError struct {
	Protocol protocol.ID // empty when unknown
	Peer     peer.ID     // empty when unknown
	Size     uint64
	Max      int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("%sframe of %d bytes exceeds the limit of %d", where(e.Protocol, e.Peer), e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *FrameTooLargeError) Is(target error) bool { return target == ErrFrameTooLarge }

// MalformedFrameError reports a frame that could not be decoded: a bad length
// prefix, a truncated body, or bytes that are not the expected message.
type MalformedFrameError struct {
	Protocol protocol.ID // empty when unknown
	Peer     peer.ID     // empty when unknown
	Message  string      // full name of the expected message type
	Reason   string
	Err      error // underlying error, may be nil
}

func (e *MalformedFrameError) Error() string {
	s := fmt.Sprintf("%smalformed %s frame: %s", where(e.Protocol, e.Peer), e.Message, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrMalformedFrame) true.
func (e *MalformedFrameError) Is(target error) bool { return target == ErrMalformedFrame }

// Unwrap returns the underlying error.
func (e *MalformedFrameError) Unwrap() error { return e.Err }

func where(p protocol.ID, id peer.ID) string {
	switch {
	case p != "" && id != "":
		return fmt.Sprintf("%s from peer %s: ", p, id)
	case p != "":
		return fmt.Sprintf("%s: ", p)
	case id != "":
		return fmt.Sprintf("peer %s: ", id)
	}
	return ""
}

// streamInfo extracts the protocol and remote peer when r or w is a libp2p
// stream (directly or wrapped by a *Stream).
func streamInfo(x any) (protocol.ID, peer.ID) {
	switch s := x.(type) {
	case *Stream:
		return s.s.Protocol(), s.s.Conn().RemotePeer()
	case network.Stream:
		return s.Protocol(), s.Conn().RemotePeer()
	case *frameReader:
		return s.proto, s.peer
	}
	return "", ""
}

// WriteMsg writes m as one length-prefixed frame with a single Write call.
func WriteMsg(w io.Writer, m proto.Message) error {
	size := proto.Size(m)
	buf := make([]byte, 0, maxVarintLen+size)
	buf = binary.AppendUvarint(buf, uint64(size))
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		p, id := streamInfo(w)
		return fmt.Errorf("%sencode %s: %w", where(p, id), m.ProtoReflect().Descriptor().FullName(), err)
	}
	if _, err := w.Write(buf); err != nil {
		p, id := streamInfo(w)
		return fmt.Errorf("%swrite %s: %w", where(p, id), m.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// ReadMsg reads one frame from r into m (which is reset first). A frame
// longer than max bytes (max <= 0 means DefaultMaxFrame) is refused with a
// *FrameTooLargeError before its body is read; a bad prefix, truncated body
// or undecodable body gives a *MalformedFrameError. A clean end of stream
// before the first byte of a frame returns io.EOF.
//
// If r is not an io.ByteReader the prefix is read one byte at a time, so
// callers reading many frames should pass a *bufio.Reader (and keep using it).
func ReadMsg(r io.Reader, m proto.Message, max int) error {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	body, err := readFrame(r, nil, max, m)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(body, m); err != nil {
		p, id := streamInfo(r)
		return &MalformedFrameError{Protocol: p, Peer: id, Message: string(m.ProtoReflect().Descriptor().FullName()), Reason: "undecodable body", Err: err}
	}
	return nil
}

// readFrame reads one frame body into buf (grown if needed) and returns it.
func readFrame(r io.Reader, buf []byte, max int, m proto.Message) ([]byte, error) {
	size, err := readUvarint(r)
	if err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		p, id := streamInfo(r)
		return nil, &MalformedFrameError{Protocol: p, Peer: id, Message: msgName(m), Reason: "bad length prefix", Err: err}
	}
	if size > uint64(max) {
		p, id := streamInfo(r)
		return nil, &FrameTooLargeError{Protocol: p, Peer: id, Size: size, Max: max}
	}
	if uint64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		p, id := streamInfo(r)
		return nil, &MalformedFrameError{Protocol: p, Peer: id, Message: msgName(m), Reason: fmt.Sprintf("truncated body (want %d bytes)", size), Err: err}
	}
	return buf, nil
}

func msgName(m proto.Message) string {
	if m == nil {
		return "message"
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}

// errVarintOverflow reports a length prefix longer than 10 bytes or above 2^64.
var errVarintOverflow = errors.New("varint overflows 64 bits")

// readUvarint reads a uvarint; io.EOF only if no byte was read at all,
// io.ErrUnexpectedEOF if the stream ended inside the prefix.
func readUvarint(r io.Reader) (uint64, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &oneByteReader{r: r}
	}
	var x uint64
	var s uint
	for i := 0; i < maxVarintLen; i++ {
		b, err := br.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		if b < 0x80 {
			if i == maxVarintLen-1 && b > 1 {
				return 0, errVarintOverflow
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, errVarintOverflow
}

type oneByteReader struct {
	r   io.Reader
	buf [1]byte
}

func (o *oneByteReader) ReadByte() (byte, error) {
	for {
		n, err := o.r.Read(o.buf[:])
		if n == 1 {
			return o.buf[0], nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// frameReader is a buffered reader that remembers the stream it reads, so
// framing errors can name the protocol and peer.
type frameReader struct {
	*bufio.Reader
	proto protocol.ID
	peer  peer.ID
}

func newFrameReader(r io.Reader, size int) *frameReader {
	p, id := streamInfo(r)
	return &frameReader{Reader: bufio.NewReaderSize(r, size), proto: p, peer: id}
}
