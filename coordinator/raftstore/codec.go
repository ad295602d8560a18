package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Log entries are stored in a compact, versioned binary form rather than
// with gob or msgpack, so that encoding a 1 KiB entry costs one allocation
// and no reflection. Layout of version 1:
//
//	byte     version (= 1)
//	uvarint  Index
//	uvarint  Term
//	byte     Type
//	uvarint  len(Data), Data
//	uvarint  len(Extensions), Extensions
//	byte     time flag: 0 = zero AppendedAt, 1 = set
//	varint   AppendedAt Unix seconds   (only when flag = 1)
//	uvarint  AppendedAt nanoseconds    (only when flag = 1)
//
// The version byte is the first byte so that a later layout can be read
// beside this one. Never renumber it: it reaches disk.
const logCodecV1 byte = 1

// errTruncated is wrapped by decodeLog when a field runs past the value's end.
var errTruncated = errors.New("value truncated")

// encodedLogSize returns an upper bound of the encoded size of l.
func encodedLogSize(l *raft.Log) int {
	return 1 + 3*binary.MaxVarintLen64 + 1 + 2*binary.MaxVarintLen64 + len(l.Data) + len(l.Extensions) + 1 + 2*binary.MaxVarintLen64
}

// appendLog appends the version-1 encoding of l to dst and returns it.
func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, logCodecV1)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	if l.AppendedAt.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
	return binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
}

// decoder reads fields from an encoded value and remembers the first error.
type decoder struct {
	buf   []byte
	err   error
	field string
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.err, d.field = errTruncated, field
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.err, d.field = errTruncated, field
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) byte1(field string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 1 {
		d.err, d.field = errTruncated, field
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

// bytes reads a length-prefixed byte string. The result is a fresh copy
// (nil when empty) so that callers may keep it after the badger
// transaction that produced buf has ended.
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.err, d.field = fmt.Errorf("%w: length %d exceeds the %d bytes left", errTruncated, n, len(d.buf)), field
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, n)
	copy(out, d.buf[:n])
	d.buf = d.buf[n:]
	return out
}

// decodeLog decodes an encoded log entry into out. Errors name the field
// that could not be read; the caller adds the key.
func decodeLog(buf []byte, out *raft.Log) error {
	d := decoder{buf: buf}
	if v := d.byte1("version"); d.err == nil && v != logCodecV1 {
		return fmt.Errorf("unknown encoding version %d (this build reads version %d)", v, logCodecV1)
	}
	var l raft.Log
	l.Index = d.uvarint("Index")
	l.Term = d.uvarint("Term")
	l.Type = raft.LogType(d.byte1("Type"))
	l.Data = d.bytes("Data")
	l.Extensions = d.bytes("Extensions")
	switch flag := d.byte1("AppendedAt flag"); {
	case d.err != nil:
	case flag == 0:
	case flag == 1:
		sec := d.varint("AppendedAt seconds")
		nsec := d.uvarint("AppendedAt nanoseconds")
		if d.err == nil && nsec >= uint64(time.Second) {
			return fmt.Errorf("field AppendedAt nanoseconds: %d is not below 1e9", nsec)
		}
		l.AppendedAt = time.Unix(sec, int64(nsec))
	default:
		return fmt.Errorf("field AppendedAt flag: unknown value %d", flag)
	}
	if d.err != nil {
		return fmt.Errorf("field %s: %w", d.field, d.err)
	}
	if len(d.buf) != 0 {
		return fmt.Errorf("%d trailing bytes after the last field", len(d.buf))
	}
	*out = l
	return nil
}
