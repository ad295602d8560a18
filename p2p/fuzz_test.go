package p2p

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sovereign-fl/sovereign/p2p/pb"
)

// Fuzz targets for every wire decoder. Seed corpora live in
// testdata/fuzz/<target>; run one with e.g. go test -fuzz FuzzReadMsg ./p2p.

func FuzzReadMsg(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 4096
		var m pb.RoundAnnounce
		err := ReadMsg(bytes.NewReader(in), &m, max)
		if err != nil {
			if err != io.EOF && !errors.Is(err, ErrFrameTooLarge) && !errors.Is(err, ErrMalformedFrame) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		// A decoded message re-encodes into a frame that decodes to the same.
		var buf bytes.Buffer
		if err := WriteMsg(&buf, &m); err != nil {
			t.Fatal(err)
		}
		var again pb.RoundAnnounce
		if err := ReadMsg(&buf, &again, 1<<20); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&m, &again) {
			t.Fatal("re-encoding changed the message")
		}
	})
}

func FuzzBlobReceive(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		hdr, sum, err := ReceiveBlob(bytes.NewReader(in), 1<<16, func(*pb.BlobHeader) (io.Writer, error) { return &out, nil })
		if err != nil {
			return
		}
		if uint64(out.Len()) != hdr.Size {
			t.Fatalf("accepted %d bytes for a blob of %d", out.Len(), hdr.Size)
		}
		if sum != Hash(sha256.Sum256(out.Bytes())) {
			t.Fatal("returned hash is not the content's")
		}
		if len(hdr.Sha256) != 0 && !bytes.Equal(hdr.Sha256, sum[:]) {
			t.Fatal("accepted content not matching the header's hash")
		}
	})
}

func FuzzDecodeChunk(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		data, err := decodeChunk(in)
		var m pb.BlobChunk
		perr := proto.Unmarshal(in, &m)
		if err == nil && (perr != nil || !bytes.Equal(data, m.Data)) {
			t.Fatalf("decodeChunk = %q, proto = %q (%v)", data, m.Data, perr)
		}
		if perr == nil && len(m.Data) > 0 && err != nil {
			t.Fatalf("decodeChunk refused what proto accepts: %v", err)
		}
	})
}

func FuzzParseFederation(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		fed, err := ParseFederation("federation.toml", in, t.TempDir())
		if err != nil {
			return
		}
		seen := map[string]bool{}
		coords := 0
		for _, m := range fed.Members() {
			if seen[m.Name] || seen[string(m.ID)] || !m.Role.Valid() {
				t.Fatalf("invalid member accepted: %+v", m)
			}
			seen[m.Name], seen[string(m.ID)] = true, true
			if m.Role == RoleCoordinator {
				coords++
				if len(m.Addrs) == 0 {
					t.Fatal("coordinator without address accepted")
				}
			}
		}
		if coords == 0 {
			t.Fatal("federation without coordinator accepted")
		}
	})
}
