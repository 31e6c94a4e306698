package api

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unsafe"

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

// TestPadding: for any offset and record header, the padding record
// Padding asks for is exactly that long once written, and puts the
// record's block on a PadAlign boundary.
func TestPadding(t *testing.T) {
	for off := 0; off < 3*PadAlign; off += 7 {
		for _, hdrLen := range []int{0, 1, 36, 37, 38, 39, 40, 200} {
			pad := Padding(off, hdrLen)
			if (off+pad+hdrLen)%PadAlign != 0 {
				t.Fatalf("off %d hdr %d: padding %d leaves the block at %d", off, hdrLen, pad, off+pad+hdrLen)
			}
			if pad == 0 {
				continue
			}
			hdr, skip := AppendPaddingHeader(nil, pad)
			if len(hdr)+skip != pad {
				t.Fatalf("off %d hdr %d: a padding record of %d bytes came out %d+%d", off, hdrLen, pad, len(hdr), skip)
			}
			rec := append(hdr, make([]byte, skip)...)
			if err := ParseBatch(rec, func(blockstore.ID, []byte) error {
				t.Fatal("padding handed out as a block")
				return nil
			}); err != nil {
				t.Fatalf("padding record of %d bytes: %v", pad, err)
			}
		}
	}
}

// TestPaddingSkipped: a batch with padding records between its blocks
// yields the blocks alone, from both decoders, and the blocks' bytes land
// on PadAlign boundaries of the body.
func TestPaddingSkipped(t *testing.T) {
	var b []byte
	var want []blockstore.ID
	for i := range 5 {
		plain := bytes.Repeat([]byte{byte(i + 1)}, blockstore.DefaultBlockSize)
		id := blockstore.Sum(plain)
		hdr := AppendDeferredBlockHeader(nil, id, len(plain))
		if pad := Padding(len(b), len(hdr)); pad > 0 {
			var skip int
			b, skip = AppendPaddingHeader(b, pad)
			b = append(b, make([]byte, skip)...)
		}
		b = append(append(b, hdr...), plain...)
		want = append(want, id)
	}
	var got []blockstore.ID
	if err := ParseBatch(b, func(id blockstore.ID, frame []byte) error {
		if _, err := blockstore.Open(id, frame, nil); err != nil {
			t.Fatal(err)
		}
		_, payload, _ := blockstore.SplitFrame(frame)
		if at := uintptr(unsafe.Pointer(&payload[0])) - uintptr(unsafe.Pointer(&b[0])); at%PadAlign != 0 {
			t.Errorf("block %d's bytes at offset %d", len(got), at)
		}
		got = append(got, id)
		return nil
	}); err != nil || len(got) != len(want) {
		t.Fatalf("parsed %d blocks, %v", len(got), err)
	}
	br := NewBatchReader(bytes.NewReader(b))
	for i := range want {
		id, _, err := br.Next()
		if err != nil || id != want[i] {
			t.Fatalf("streamed record %d: %s, %v", i, id.Short(), err)
		}
	}
	if _, _, err := br.Next(); err != io.EOF {
		t.Fatalf("after the blocks: %v", err)
	}
}

func TestValidPrincipalName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"alice.smith@lab-1", true},
		{"u_2", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../../../x", false},
		{"a/b", false},
		{"-rf", false},
		{".hidden", false},
		{"a b", false},
		{"a\x00b", false},
		{"é", false},
		{strings.Repeat("a", MaxPrincipalNameLen), true},
		{strings.Repeat("a", MaxPrincipalNameLen+1), false},
	} {
		err := ValidPrincipalName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidPrincipalName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("ValidPrincipalName(%q) = %v, not ErrMalformed", tc.name, err)
		}
	}
}
