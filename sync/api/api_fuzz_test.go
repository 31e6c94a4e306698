package api

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

func seedBatch() []byte {
	var b []byte
	for _, plain := range [][]byte{[]byte("hello"), bytes.Repeat([]byte("ab"), 3000), {1}} {
		b = AppendBlock(b, blockstore.Sum(plain), blockstore.Encode(nil, plain))
	}
	return b
}

// FuzzParseBatch checks that the in-memory batch decoder never panics, never
// hands out a frame beyond its bound, and agrees with the streaming decoder.
func FuzzParseBatch(f *testing.F) {
	f.Add(seedBatch())
	padded, skip := AppendPaddingHeader(nil, Padding(0, 40))
	f.Add(append(append(padded, make([]byte, skip)...), seedBatch()...))
	f.Add([]byte{})
	f.Add(make([]byte, 31))
	f.Add(append(make([]byte, 32), 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Fuzz(func(t *testing.T, b []byte) {
		var parsed [][]byte
		perr := ParseBatch(b, func(id blockstore.ID, frame []byte) error {
			if len(frame) > MaxFrameLen {
				t.Fatalf("frame of %d bytes passed the bound", len(frame))
			}
			parsed = append(parsed, append(id[:], frame...))
			return nil
		})
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("error does not wrap ErrMalformed: %v", perr)
		}
		br := NewBatchReader(bytes.NewReader(b))
		var streamed [][]byte
		var serr error
		for {
			id, frame, err := br.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				serr = err
				break
			}
			streamed = append(streamed, append(id[:], frame...))
		}
		if (perr == nil) != (serr == nil) {
			t.Fatalf("decoders disagree: ParseBatch %v, BatchReader %v", perr, serr)
		}
		if perr == nil && len(parsed) != len(streamed) {
			t.Fatalf("decoders disagree on record count: %d vs %d", len(parsed), len(streamed))
		}
		for i := range min(len(parsed), len(streamed)) {
			if !bytes.Equal(parsed[i], streamed[i]) {
				t.Fatalf("record %d differs", i)
			}
		}
		// What decodes must re-encode to the same bytes (canonical lengths
		// aside, which the decoder may accept).
		if perr == nil {
			var re []byte
			_ = ParseBatch(b, func(id blockstore.ID, frame []byte) error {
				re = AppendBlock(re, id, frame)
				return nil
			})
			if len(re) > len(b) {
				t.Fatalf("re-encoding grew: %d > %d", len(re), len(b))
			}
		}
		// Fed in pieces (as the server reads an upload), the same records
		// and the same verdict, whatever the pieces.
		for _, step := range []int{1, 7, 33, 1 + len(b)/3} {
			var p BatchParser
			var pieced [][]byte
			var ferr error
			for end := 0; end < len(b) && ferr == nil; {
				end = min(end+step, len(b))
				ferr = p.Feed(b[:end], func(id blockstore.ID, frame []byte) error {
					pieced = append(pieced, append(id[:], frame...))
					return nil
				})
			}
			if ferr == nil {
				ferr = p.End(b)
			}
			if (ferr == nil) != (perr == nil) {
				t.Fatalf("step %d: pieces %v, whole %v", step, ferr, perr)
			}
			if perr == nil && len(pieced) != len(parsed) {
				t.Fatalf("step %d: %d records in pieces, %d whole", step, len(pieced), len(parsed))
			}
			for i := range min(len(pieced), len(parsed)) {
				if !bytes.Equal(pieced[i], parsed[i]) {
					t.Fatalf("step %d: record %d differs", step, i)
				}
			}
		}
	})
}

// FuzzDecodeIDs checks the ID-list decoder.
func FuzzDecodeIDs(f *testing.F) {
	f.Add(AppendIDs(nil, []blockstore.ID{blockstore.Sum([]byte("x")), {}}), 4)
	f.Add([]byte{1, 2, 3}, 1)
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		ids, err := DecodeIDs(b, max)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(ids) > max {
			t.Fatalf("%d IDs passed a bound of %d", len(ids), max)
		}
		if !bytes.Equal(AppendIDs(nil, ids), b) {
			t.Fatal("round trip differs")
		}
	})
}
