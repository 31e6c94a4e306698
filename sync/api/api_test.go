package api

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

func TestBatchRoundTrip(t *testing.T) {
	b := seedBatch()
	var n int
	if err := ParseBatch(b, func(id blockstore.ID, frame []byte) error {
		if _, err := blockstore.Open(id, frame, nil); err != nil {
			t.Fatalf("record %d: %v", n, err)
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("parsed %d records, want 3", n)
	}
}

// TestAppendDeferredBlock: a record written straight from plain bytes
// parses to the frame EncodeDeferred makes, for sizes whose length takes
// one, two and three uvarint bytes.
func TestAppendDeferredBlock(t *testing.T) {
	var b []byte
	var plains [][]byte
	for _, n := range []int{0, 100, 1000, blockstore.MaxBlockSize} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		plains = append(plains, p)
		b = AppendDeferredBlock(b, blockstore.Sum(p), p)
	}
	i := 0
	if err := ParseBatch(b, func(id blockstore.ID, frame []byte) error {
		if !bytes.Equal(frame, blockstore.EncodeDeferred(nil, plains[i])) {
			t.Errorf("record %d: not the deferred frame of its block", i)
		}
		if _, err := blockstore.Open(id, frame, nil); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
		i++
		return nil
	}); err != nil || i != len(plains) {
		t.Fatalf("parsed %d records: %v", i, err)
	}
}

func TestBatchErrors(t *testing.T) {
	good := seedBatch()
	tests := []struct {
		name string
		b    []byte
	}{
		{"id cut", good[:10]},
		{"length cut", append(make([]byte, 32), 0x80)},
		{"frame cut", good[:len(good)-1]},
		{"too long", append(make([]byte, 32), 0xff, 0xff, 0xff, 0x7f)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParseBatch(tt.b, func(blockstore.ID, []byte) error { return nil })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseBatch: got %v, want ErrMalformed", err)
			}
			br := NewBatchReader(bytes.NewReader(tt.b))
			for {
				_, _, err = br.Next()
				if err != nil {
					break
				}
			}
			if err == io.EOF || !errors.Is(err, ErrMalformed) {
				t.Fatalf("BatchReader: got %v, want ErrMalformed", err)
			}
		})
	}
}
