package badgerstore

import (
	"bytes"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

// FuzzParseRef feeds index entries as they could be found on a damaged
// disk to parseRef: it must not panic, and whatever it accepts must encode
// back to the same bytes and name a real place in a pack.
func FuzzParseRef(f *testing.F) {
	for _, frame := range [][]byte{
		blockstore.Encode(nil, bytes.Repeat([]byte("dvfs"), 1000)),
		blockstore.Encode(nil, []byte{1, 2, 3}),
	} {
		hdr, payload, err := blockstore.SplitFrame(frame)
		if err != nil {
			f.Fatal(err)
		}
		r := ref{pack: 3, off: 5 * packAlign, n: len(payload)}
		r.hdrLen = copy(r.hdr[:], hdr)
		f.Add(appendRef(nil, &r))
		r.sum, r.hasSum = 0xdeadbeef, true
		f.Add(appendRef(nil, &r))
		f.Add(frame) // a legacy entry
	}
	f.Add([]byte{refTag})
	f.Add([]byte{refTagSum})
	f.Fuzz(func(t *testing.T, v []byte) {
		var r ref
		isRef, err := parseRef(v, &r)
		if !isRef {
			if err != nil {
				t.Fatalf("not a ref, yet an error: %v", err)
			}
			return
		}
		if err != nil {
			return
		}
		if r.pack == 0 || r.off%packAlign != 0 || r.n < 0 || r.n > maxPayload {
			t.Fatalf("accepted an impossible ref %+v", r)
		}
		if got := appendRef(nil, &r); !bytes.Equal(got, v) {
			t.Fatalf("ref %x re-encodes as %x", v, got)
		}
	})
}
