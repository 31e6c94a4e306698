package fs

import (
	"bytes"
	"errors"
	iofs "io/fs"
	"testing"
)

// FuzzRecord feeds arbitrary bytes to the decoders of overlay metadata,
// which read a disk: they must not panic, must fail with ErrCorrupt, and
// what they accept must encode back to the same bytes.
//
// The seed corpus is in testdata/fuzz/FuzzRecord.
func FuzzRecord(f *testing.F) {
	f.Add((&record{mode: 0o644, size: 100, baseSize: 50, mtime: 1, ctime: 2, basePath: "a/b"}).marshal())
	f.Add((&header{baseVersion: 3, blockSize: 65536}).marshal())
	f.Add((&record{mode: iofs.ModeDevice | iofs.ModeCharDevice | 0o600, mtime: 1, atime: 3, ctime: 2, uid: 1000, gid: 100, rdev: 259}).marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := unmarshalRecord(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("record error does not wrap ErrCorrupt: %v", err)
			}
		} else if again := r.marshal(); !bytes.Equal(again, b) {
			// Varints have one shortest form; a longer one decodes too.
			// A format 1 record comes back as format 2, owned by whom
			// it loaded as.
			want := r
			want.owned = true
			if r2, err := unmarshalRecord(again); err != nil || r2 != want {
				t.Fatalf("record does not round-trip: %+v", r)
			}
		}
		if h, err := unmarshalHeader(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("header error does not wrap ErrCorrupt: %v", err)
			}
		} else if h2, err := unmarshalHeader(h.marshal()); err != nil || h2 != h {
			t.Fatalf("header does not round-trip: %+v", h)
		}
		var bm bitmap
		if err := bm.load(int(len(b)%7), b); err == nil {
			if got := bm.encode(len(b) % 7); !bytes.Equal(got, bytes.TrimRight(b, "\x00")) && !(got == nil && len(bytes.TrimRight(b, "\x00")) == 0) {
				t.Fatalf("bitmap chunk does not round-trip")
			}
		}
	})
}
