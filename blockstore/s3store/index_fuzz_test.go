package s3store

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// FuzzDecodeEntry feeds arbitrary bytes to the index entry decoder: the
// index lives in a metadata store on disk or across the network. It must
// never panic; an error wraps ErrCorrupt; an entry it accepts is within
// the bounds of a pack and of a frame, carries a frame header that parses,
// and encodes back to the same bytes.
//
// The seed corpus is in testdata/fuzz/FuzzDecodeEntry.
func FuzzDecodeEntry(f *testing.F) {
	raw := blockstore.Encode(nil, []byte("hello, dvfs"))
	hdr, _, _ := blockstore.SplitFrame(raw)
	f.Add(appendEntry(nil, entry{pack: packID{1, 2, 3}, off: 0, n: int64(len(raw)), header: hdr}))
	f.Add(appendEntry(nil, entry{pack: packID{9}, off: 32 << 20, n: maxFrame, header: blockstore.AppendRawHeader(nil, blockstore.MaxBlockSize)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			if !errors.Is(err, blockstore.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if e.off < 0 || e.n <= 0 || e.n > maxFrame || e.off+e.n > maxPackSize || int64(len(e.header)) > e.n {
			t.Fatalf("accepted an entry out of bounds: %+v", e)
		}
		if _, err := blockstore.FrameLen(e.header); err != nil {
			t.Fatalf("accepted a header that does not parse: %v", err)
		}
		if got := appendEntry(nil, e); !bytes.Equal(got, b) {
			t.Fatalf("entry does not encode back to its bytes:\n%x\n%x", b, got)
		}
	})
}

// FuzzDecodePackRecord does the same for pack records.
//
// The seed corpus is in testdata/fuzz/FuzzDecodePackRecord.
func FuzzDecodePackRecord(f *testing.F) {
	f.Add(appendPackRecord(nil, packRecord{size: 32 << 20, born: time.Unix(1_800_000_000, 0)}))
	f.Add(appendPackRecord(nil, packRecord{committed: true, size: 5, born: time.Unix(-1, 0)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodePackRecord(b)
		if err != nil {
			if !errors.Is(err, blockstore.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if r.size < 0 || r.size > maxPackSize {
			t.Fatalf("accepted a pack of %d bytes", r.size)
		}
		if got := appendPackRecord(nil, r); !bytes.Equal(got, b) {
			t.Fatalf("record does not encode back to its bytes:\n%x\n%x", b, got)
		}
	})
}
