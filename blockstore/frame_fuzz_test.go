package blockstore

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the frame decoder, which reads frames
// from disk and from the network. Decode must never panic, never return
// more than MaxBlockSize bytes, and either fail with ErrCorrupt leaving dst
// as it was or return a block that Open accepts under its hash. The input
// is also taken as a plain block: Encode then Open must give it back.
//
// The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add(Encode(nil, []byte("hello, dvfs")))
	f.Add(Encode(nil, compressibleBytes(1, 3000)))
	f.Add(EncodeDeferred(nil, compressibleBytes(2, 3000)))
	f.Fuzz(func(t *testing.T, frame []byte) {
		prefix := []byte("pre")
		out, err := Decode(bytes.Clone(prefix), frame)
		if !bytes.HasPrefix(out, prefix) {
			t.Fatalf("Decode lost dst")
		}
		plain := out[len(prefix):]
		if len(plain) > MaxBlockSize {
			t.Fatalf("Decode returned %d bytes, more than MaxBlockSize", len(plain))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode error does not wrap ErrCorrupt: %v", err)
			}
			if len(plain) != 0 {
				t.Fatalf("Decode returned %d bytes along with an error", len(plain))
			}
		} else {
			if n, err := FrameLen(frame); err != nil || n != len(plain) {
				t.Fatalf("FrameLen = %d, %v; Decode gave %d bytes", n, err, len(plain))
			}
			again, err := Open(Sum(plain), frame, nil)
			if err != nil || !bytes.Equal(again, plain) {
				t.Fatalf("Open under the hash of what Decode gave: %v", err)
			}
		}

		x := frame
		if len(x) > MaxBlockSize {
			x = x[:MaxBlockSize]
		}
		for _, enc := range [][]byte{Encode(nil, x), EncodeDeferred(nil, x)} {
			got, err := Open(Sum(x), enc, prefix[:0:0])
			if err != nil || !bytes.Equal(got, x) {
				t.Fatalf("Open(Sum(x), frame of x, deferred %v) of %d bytes: %d bytes, %v", Deferred(enc), len(x), len(got), err)
			}
		}
	})
}
