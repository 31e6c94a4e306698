package blockstore

import (
	"bytes"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestSectorCVs: the root of a block's sector chaining values is its ID,
// and SumReplaced gives the ID (and chaining values) of the block with
// sectors replaced, for every block length that has them.
func TestSectorCVs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{2 * CVSector, 16 << 10, 32 << 10, DefaultBlockSize, 256 << 10} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		cvs := AppendSectorCVs(nil, b)
		if len(cvs) != CVLen(n) {
			t.Fatalf("%d bytes: %d bytes of CVs, CVLen says %d", n, len(cvs), CVLen(n))
		}
		id, err := RootOfCVs(cvs)
		if err != nil || id != Sum(b) {
			t.Fatalf("%d bytes: root %s, %v; Sum %s", n, id.Short(), err, Sum(b).Short())
		}
		spb := n / CVSector
		if spb > 64 {
			continue
		}
		for range 20 {
			mask := r.Uint64()
			if spb < 64 {
				mask &= 1<<spb - 1
			}
			if r.IntN(3) == 0 {
				mask = 1 << r.IntN(spb)
			}
			nb := bytes.Clone(b)
			var sectors []byte
			for i := range spb {
				if mask&(1<<i) != 0 {
					s := nb[i*CVSector : (i+1)*CVSector]
					for j := range s {
						s[j] = byte(r.IntN(256))
					}
					sectors = append(sectors, s...)
				}
			}
			got, gotCVs, err := SumReplaced(nil, cvs, mask, sectors)
			if err != nil {
				t.Fatal(err)
			}
			if want := Sum(nb); got != want {
				t.Fatalf("%d bytes, mask %x (%d sectors): %s, want %s", n, mask, bits.OnesCount64(mask), got.Short(), want.Short())
			}
			if !bytes.Equal(gotCVs, AppendSectorCVs(nil, nb)) {
				t.Fatalf("%d bytes, mask %x: chaining values differ from the new block's", n, mask)
			}
		}
	}
	for _, n := range []int{0, CVSector, 3 * CVSector, DefaultBlockSize - 1, 12 << 10} {
		if CVLen(n) != 0 {
			t.Errorf("CVLen(%d) = %d, want 0", n, CVLen(n))
		}
	}
	if _, err := RootOfCVs(make([]byte, 3*CVSize)); err == nil {
		t.Error("RootOfCVs of three chaining values: no error")
	}
	if _, _, err := SumReplaced(nil, make([]byte, 16*CVSize), 1<<16, make([]byte, CVSector)); err == nil {
		t.Error("SumReplaced with a mask past the block: no error")
	}
	if _, _, err := SumReplaced(nil, make([]byte, 16*CVSize), 3, make([]byte, CVSector)); err == nil {
		t.Error("SumReplaced with too few sector bytes: no error")
	}
}

// BenchmarkSealHash compares what a seal hashes for one 4 KiB write into
// a 64 KiB block: the whole new block (Sum) against the written sector
// merged with the base's chaining values (SumReplaced), and what keeping
// the chaining values costs as a block enters the cache (AppendSectorCVs).
func BenchmarkSealHash(b *testing.B) {
	blk := make([]byte, DefaultBlockSize)
	cvs := AppendSectorCVs(nil, blk)
	b.Run("Sum", func(b *testing.B) {
		b.SetBytes(CVSector)
		for b.Loop() {
			Sum(blk)
		}
	})
	b.Run("SumReplaced", func(b *testing.B) {
		b.SetBytes(CVSector)
		var dst []byte
		for b.Loop() {
			_, dst, _ = SumReplaced(dst[:0], cvs, 1<<5, blk[:CVSector])
		}
	})
	b.Run("AppendSectorCVs", func(b *testing.B) {
		b.SetBytes(DefaultBlockSize)
		var dst []byte
		for b.Loop() {
			dst = AppendSectorCVs(dst[:0], blk)
		}
	})
}

// FuzzRootOfCVs: chaining values read from a cache's disk give a root or
// an error, never a panic; SumReplaced over them checks its arguments.
func FuzzRootOfCVs(f *testing.F) {
	f.Add(AppendSectorCVs(nil, make([]byte, DefaultBlockSize)), uint64(1))
	f.Add([]byte{1, 2, 3}, uint64(0))
	f.Fuzz(func(t *testing.T, cvs []byte, mask uint64) {
		if _, err := RootOfCVs(cvs); err != nil {
			return
		}
		SumReplaced(nil, cvs, mask, make([]byte, bits.OnesCount64(mask)*CVSector))
	})
}
