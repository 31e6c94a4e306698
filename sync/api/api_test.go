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
