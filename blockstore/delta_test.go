package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// changeSectors returns a copy of base with the sectors in mask overwritten
// by fresh bytes from seed (compressible when compressible is set).
func changeSectors(base []byte, sectorSize int, mask uint64, seed uint64, compressible bool) []byte {
	out := bytes.Clone(base)
	fill := randomBytes(seed, len(base))
	if compressible {
		fill = compressibleBytes(seed, len(base))
	}
	for i := 0; i < 64; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		off := i * sectorSize
		copy(out[off:min(off+sectorSize, len(out))], fill[off:])
	}
	return out
}

func TestDeltaRoundTrip(t *testing.T) {
	tests := []struct {
		name         string
		n, sector    int
		mask         uint64
		compressible bool
		codec        byte
	}{
		{"one 4k sector", DefaultBlockSize, 4096, 1 << 3, false, deltaRaw},
		{"one 4k sector, compressible", DefaultBlockSize, 4096, 1 << 3, true, deltaZstd},
		{"first and last", DefaultBlockSize, 4096, 1 | 1<<15, false, deltaRaw},
		{"all 64 sectors of 1k", DefaultBlockSize, 1024, ^uint64(0), false, deltaRaw},
		{"short last sector", 10000, 4096, 1 << 2, false, deltaRaw},
		{"short block, 512-byte sectors", 1000, 512, 1 << 1, false, deltaRaw},
		{"max block, 64k sectors", MaxBlockSize, 64 << 10, 1<<0 | 1<<63, true, deltaZstd},
		{"1 MiB sector", MaxBlockSize, 1 << 20, 1 << 3, false, deltaRaw},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := randomBytes(1, tc.n)
			block := changeSectors(base, tc.sector, tc.mask, 2, tc.compressible)
			baseID := Sum(base)
			frame := AppendDeltaFrame([]byte("head"), baseID, tc.sector, tc.mask, block)
			if !bytes.HasPrefix(frame, []byte("head")) {
				t.Fatal("AppendDeltaFrame lost dst")
			}
			frame = frame[4:]
			if !IsDelta(frame) {
				t.Fatal("IsDelta = false")
			}
			d, err := ParseDelta(frame)
			if err != nil {
				t.Fatalf("ParseDelta: %v", err)
			}
			if d.Base != baseID || d.PlainLen != tc.n || d.SectorSize != tc.sector || d.Mask != tc.mask {
				t.Fatalf("ParseDelta = base %s len %d sector %d mask %#x", d.Base.Short(), d.PlainLen, d.SectorSize, d.Mask)
			}
			hdr := 1 + len(binary.AppendUvarint(nil, uint64(tc.n)))
			if codec := frame[hdr+deltaFixed-1]; codec != tc.codec {
				t.Errorf("payload codec %d, want %d", codec, tc.codec)
			}
			got, err := d.Apply([]byte("x"), base)
			if err != nil || !bytes.Equal(got[1:], block) || got[0] != 'x' {
				t.Fatalf("Apply: %v (equal %v)", err, bytes.Equal(got[1:], block))
			}
			// The frame functions refuse it, clearly.
			for name, err := range map[string]error{
				"Decode": func() error { _, err := Decode(nil, frame); return err }(),
				"Open":   func() error { _, err := Open(Sum(block), frame, nil); return err }(),
				"Verify": Verify(Sum(block), frame),
				"FrameLen": func() error {
					_, err := FrameLen(frame)
					return err
				}(),
				"SplitFrame": func() error { _, _, err := SplitFrame(frame); return err }(),
			} {
				if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNeedsBase) {
					t.Errorf("%s of a delta frame: %v, want ErrCorrupt and ErrNeedsBase", name, err)
				}
			}
		})
	}
}

// deltaFrame builds a delta frame field by field, for the refusal tests.
func deltaFrame(plainLen uint64, shift byte, mask uint64, codec byte, payload []byte) []byte {
	f := []byte{codecDelta}
	f = binary.AppendUvarint(f, plainLen)
	f = append(f, make([]byte, IDSize)...)
	f = append(f, shift)
	f = binary.LittleEndian.AppendUint64(f, mask)
	f = append(f, codec)
	return append(f, payload...)
}

func TestParseDeltaRefuses(t *testing.T) {
	good := deltaFrame(8192, 12, 1, deltaRaw, make([]byte, 4096))
	if _, err := ParseDelta(good); err != nil {
		t.Fatalf("the good frame: %v", err)
	}
	tests := []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"not a delta", Encode(nil, []byte("abc"))},
		{"codec byte only", []byte{codecDelta}},
		{"cut in the fixed fields", good[:20]},
		{"zero length", deltaFrame(0, 12, 1, deltaRaw, nil)},
		{"length past MaxBlockSize", deltaFrame(MaxBlockSize+1, 20, 1, deltaRaw, nil)},
		{"sector of 256", deltaFrame(8192, 8, 1, deltaRaw, make([]byte, 256))},
		{"sector of 2 MiB", deltaFrame(8192, 21, 1, deltaRaw, make([]byte, 8192))},
		{"more than 64 sectors", deltaFrame(65*512, 9, 1, deltaRaw, make([]byte, 512))},
		{"empty mask", deltaFrame(8192, 12, 0, deltaRaw, nil)},
		{"mask past the end", deltaFrame(8192, 12, 1<<2, deltaRaw, make([]byte, 4096))},
		{"payload short", deltaFrame(8192, 12, 1, deltaRaw, make([]byte, 4095))},
		{"payload long", deltaFrame(8192, 12, 1, deltaRaw, make([]byte, 4097))},
		{"short last sector counted whole", deltaFrame(5000, 12, 2, deltaRaw, make([]byte, 4096))},
		{"unknown payload codec", deltaFrame(8192, 12, 1, 7, make([]byte, 4096))},
		{"zstd garbage", deltaFrame(8192, 12, 1, deltaZstd, []byte("not zstd"))},
		{"zstd of too many bytes", deltaFrame(8192, 12, 1, deltaZstd, Encode(nil, make([]byte, 8192))[3:])},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseDelta(tc.frame); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseDelta: %v, want ErrCorrupt", err)
			}
		})
	}
	d, _ := ParseDelta(good)
	for _, n := range []int{0, 8191, 8193} {
		if _, err := d.Apply(nil, make([]byte, n)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Apply to a base of %d bytes: %v, want ErrCorrupt", n, err)
		}
	}
	d.Sectors = d.Sectors[1:]
	if _, err := d.Apply(nil, make([]byte, 8192)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Apply with short sectors: %v, want ErrCorrupt", err)
	}
}

func TestAppendDeltaFramePanics(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sector int
		mask   uint64
		n      int
	}{
		{"empty mask", 4096, 0, 8192},
		{"mask past end", 4096, 4, 8192},
		{"odd sector", 3000, 1, 8192},
		{"too many sectors", 512, 1, 65 * 512},
		{"empty block", 512, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			AppendDeltaFrame(nil, ID{}, tc.sector, tc.mask, make([]byte, tc.n))
		})
	}
}

// FuzzParseDelta feeds arbitrary bytes to ParseDelta, which reads delta
// frames from the network and from the server's metadata. It must never
// panic; an error must wrap ErrCorrupt; a delta it accepts must apply to a
// base of its plain length, giving a block of that length that a frame
// made again from it (AppendDeltaFrame) parses and applies the same. Every
// frame function but ParseDelta must refuse the frame with ErrNeedsBase.
//
// The seed corpus is in testdata/fuzz/FuzzParseDelta.
func FuzzParseDelta(f *testing.F) {
	base := randomBytes(1, DefaultBlockSize)
	f.Add(AppendDeltaFrame(nil, Sum(base), 4096, 1<<3, changeSectors(base, 4096, 1<<3, 2, false)))
	f.Add(AppendDeltaFrame(nil, Sum(base), 4096, 1|1<<15, changeSectors(base, 4096, 1|1<<15, 3, true)))
	f.Add(AppendDeltaFrame(nil, Sum(base[:1000]), 512, 2, changeSectors(base[:1000], 512, 2, 4, false)))
	f.Fuzz(func(t *testing.T, frame []byte) {
		d, err := ParseDelta(frame)
		if IsDelta(frame) {
			if _, derr := Decode(nil, frame); !errors.Is(derr, ErrNeedsBase) {
				t.Fatalf("Decode of a delta frame: %v", derr)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ParseDelta error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		base := randomBytes(5, d.PlainLen)
		block, err := d.Apply(nil, base)
		if err != nil || len(block) != d.PlainLen {
			t.Fatalf("Apply of a parsed delta: %d bytes, %v", len(block), err)
		}
		again, err := ParseDelta(AppendDeltaFrame(nil, d.Base, d.SectorSize, d.Mask, block))
		if err != nil {
			t.Fatalf("ParseDelta of the frame made again: %v", err)
		}
		block2, err := again.Apply(nil, base)
		if err != nil || !bytes.Equal(block, block2) {
			t.Fatalf("the frame made again applies differently: %v", err)
		}
	})
}

// TestAppendDeltaFrameSectors: given only the mask's sectors, the frame is
// the one AppendDeltaFrame makes from the whole block, short last sector
// included.
func TestAppendDeltaFrameSectors(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{DefaultBlockSize, DefaultBlockSize - 1000, 4096 * 3, 5000} {
		block := make([]byte, n)
		for i := range block {
			block[i] = byte(r.IntN(4)) // compressible sometimes
		}
		sectors := (n + 4095) / 4096
		for range 20 {
			mask := r.Uint64() & (1<<sectors - 1)
			if mask == 0 {
				mask = 1 << (sectors - 1)
			}
			var sec []byte
			for m := mask; m != 0; m &= m - 1 {
				off := bits.TrailingZeros64(m) * 4096
				sec = append(sec, block[off:min(off+4096, n)]...)
			}
			if len(sec) != DeltaSectorBytes(n, 4096, mask) {
				t.Fatalf("%d bytes, mask %x: DeltaSectorBytes %d, sectors %d", n, mask, DeltaSectorBytes(n, 4096, mask), len(sec))
			}
			var base ID
			base[0] = 1
			want := AppendDeltaFrame(nil, base, 4096, mask, block)
			if got := AppendDeltaFrameSectors(nil, base, 4096, mask, n, sec); !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, mask %x: frames differ", n, mask)
			}
		}
	}
}
