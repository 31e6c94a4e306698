package api

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// cloneManifest is a clone of one disk of n blocks of random IDs.
func cloneManifest(n int, seed uint64) *manifest.Manifest {
	r := rand.New(rand.NewPCG(seed, 1))
	f := manifest.File{Path: "disk.vmdk", Mode: 0o644, Size: int64(n) * 65536, MTime: time.Unix(1, 0)}
	for range n {
		var id blockstore.ID
		for k := range id {
			id[k] = byte(r.Uint32())
		}
		f.Blocks = append(f.Blocks, id)
	}
	return &manifest.Manifest{Kind: manifest.KindClone, Name: "lab", BlockSize: 65536, Files: []manifest.File{
		f, {Path: "disk.vmx", Mode: 0o644, Size: 3, MTime: time.Unix(1, 0), Blocks: []blockstore.ID{blockstore.Sum([]byte("vmx"))}}}}
}

// TestManifestDelta: a generation that changed 100 of 32,768 blocks (a 2
// GiB disk) travels as a small fraction of its 1 MiB manifest, decodes to
// the same bytes, and a wrong dictionary never decodes to a manifest.
func TestManifestDelta(t *testing.T) {
	parent := cloneManifest(32768, 1)
	next := cloneManifest(32768, 1)
	r := rand.New(rand.NewPCG(2, 2))
	for range 100 {
		next.Files[0].Blocks[r.IntN(32768)] = blockstore.Sum([]byte{byte(r.Uint32()), byte(r.Uint32())})
	}
	next.Files[0].MTime = time.Unix(2, 0)
	body, err := next.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dict := ManifestDict(parent)
	enc, err := EncodeManifestDelta(body, dict)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manifest %d bytes, sent as %d (%.2f%%)", len(body), len(enc), 100*float64(len(enc))/float64(len(body)))
	if len(enc) > 100*(blockstore.IDSize+16)+4096 {
		t.Errorf("delta of 100 changed blocks is %d bytes", len(enc))
	}
	dec, err := DecodeManifestDelta(enc, dict, MaxManifestBytes)
	if err != nil || !bytes.Equal(dec, body) {
		t.Fatalf("decoded %d bytes (%v), want the %d encoded", len(dec), err, len(body))
	}
	if DictID(dict) == DictID(ManifestDict(next)) {
		t.Fatal("two dictionaries with one ID")
	}
	// Another dictionary: an error, or bytes that are not the manifest
	// (which manifest.Unmarshal and the server's dictionary check catch).
	if out, err := DecodeManifestDelta(enc, ManifestDict(cloneManifest(32768, 3)), MaxManifestBytes); err == nil && bytes.Equal(out, body) {
		t.Fatal("decoded the manifest with the wrong dictionary")
	}
	if _, err := DecodeManifestDelta(enc, dict, len(body)-1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over the bound: %v", err)
	}
}

func FuzzDecodeManifestDelta(f *testing.F) {
	parent := cloneManifest(64, 1)
	body, _ := cloneManifest(64, 1).MarshalBinary()
	dict := ManifestDict(parent)
	enc, _ := EncodeManifestDelta(body, dict)
	f.Add(enc)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := DecodeManifestDelta(data, dict, 1<<20)
		if err == nil && len(out) > 1<<20 {
			t.Fatalf("decoded %d bytes past the bound", len(out))
		}
		if err == nil {
			manifest.Unmarshal(out) // must not panic
		}
	})
}

// withHoles makes every fourth block of m's disk a hole, as in a thin
// template.
func withHoles(m *manifest.Manifest) *manifest.Manifest {
	for j := range m.Files[0].Blocks {
		if j%4 == 3 {
			m.Files[0].Blocks[j] = blockstore.Hole
		}
	}
	return m
}

// writeInto changes k blocks of m's disk, holes among them.
func writeInto(m *manifest.Manifest, k int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	b := m.Files[0].Blocks
	for i := range k {
		j := r.IntN(len(b))
		if i%2 == 0 {
			j = j&^3 | 3 // a hole: the encoding's layout moves
		}
		b[j] = blockstore.Sum([]byte{byte(r.Uint32()), byte(r.Uint32()), byte(i)})
	}
	m.Files[0].MTime = m.Files[0].MTime.Add(time.Second)
}

// TestManifestXOR: a generation that wrote 100 blocks of a 2 GiB thin disk
// (half of them into holes, which moves the encoding's layout), grew its
// log and gained a file travels as a small fraction of its manifest and
// rebuilds to the same bytes over the parent; over another parent, or
// past the bound, it is refused.
func TestManifestXOR(t *testing.T) {
	parent := withHoles(cloneManifest(32768, 1))
	next := withHoles(cloneManifest(32768, 1))
	writeInto(next, 100, 2)
	next.Files[1].Size, next.Files[1].Blocks = 65536+5, []blockstore.ID{blockstore.Sum([]byte("a")), blockstore.Sum([]byte("b"))}
	// A new first file: the others' indexes move.
	next.Files = append([]manifest.File{{Path: "disk.nvram", Mode: 0o644, Size: 9, MTime: time.Unix(3, 0), Blocks: []blockstore.ID{blockstore.Sum([]byte("nv"))}}}, next.Files...)
	body, err := next.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeManifestXOR(next, body, parent)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manifest %d bytes, sent as %d (%.2f%%)", len(body), len(enc), 100*float64(len(enc))/float64(len(body)))
	if len(enc) > 103*(blockstore.IDSize+16)+4096 {
		t.Errorf("delta of 103 changed blocks is %d bytes", len(enc))
	}
	dec, err := DecodeManifestXOR(enc, parent, MaxManifestBytes)
	if err != nil || !bytes.Equal(dec, body) {
		t.Fatalf("decoded %d bytes (%v), want the %d encoded", len(dec), err, len(body))
	}
	// The first generation, from a template with no holes where this one
	// has them: no parent file lines up, and it still rebuilds.
	if dec, err := DecodeManifestXOR(mustXOR(t, next, cloneManifest(10, 9)), cloneManifest(10, 9), MaxManifestBytes); err != nil || !bytes.Equal(dec, body) {
		t.Fatalf("over an unrelated parent: %d bytes, %v", len(dec), err)
	}
	other := withHoles(cloneManifest(32768, 1))
	writeInto(other, 1, 3)
	if _, err := DecodeManifestXOR(enc, other, MaxManifestBytes); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over another parent: %v", err)
	}
	if _, err := DecodeManifestXOR(enc, parent, len(body)/2); !errors.Is(err, ErrMalformed) {
		t.Fatalf("over the bound: %v", err)
	}
}

func mustXOR(t *testing.T, m, parent *manifest.Manifest) []byte {
	t.Helper()
	body, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := EncodeManifestXOR(m, body, parent)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// BenchmarkManifestDelta compares the two encodings of a generation that
// wrote 100 blocks of a thin disk, at 2 GiB and 40 GiB: ns/op is the
// client's encoding, B/sent what travels.
func BenchmarkManifestDelta(b *testing.B) {
	for _, n := range []int{32768, 655360} {
		parent := withHoles(cloneManifest(n, 1))
		next := withHoles(cloneManifest(n, 1))
		writeInto(next, 100, 2)
		body, _ := next.MarshalBinary()
		b.Run(fmt.Sprintf("blocks=%d/parent-dict", n), func(b *testing.B) {
			var enc []byte
			for b.Loop() {
				dict := ManifestDict(parent)
				enc, _ = EncodeManifestDelta(body, dict)
				_ = DictID(dict)
			}
			b.ReportMetric(float64(len(enc)), "B/sent")
		})
		b.Run(fmt.Sprintf("blocks=%d/xor", n), func(b *testing.B) {
			var enc []byte
			for b.Loop() {
				enc, _ = EncodeManifestXOR(next, body, parent)
			}
			b.ReportMetric(float64(len(enc)), "B/sent")
		})
		b.Run(fmt.Sprintf("blocks=%d/xor-decode", n), func(b *testing.B) {
			enc, _ := EncodeManifestXOR(next, body, parent)
			for b.Loop() {
				if _, err := DecodeManifestXOR(enc, parent, MaxManifestBytes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzDecodeManifestXOR(f *testing.F) {
	parent := withHoles(cloneManifest(64, 1))
	next := withHoles(cloneManifest(64, 1))
	writeInto(next, 5, 2)
	body, _ := next.MarshalBinary()
	enc, _ := EncodeManifestXOR(next, body, parent)
	f.Add(enc)
	f.Add(append(make([]byte, blockstore.IDSize), 0x28, 0xb5, 0x2f, 0xfd))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := DecodeManifestXOR(data, parent, 1<<20)
		if err == nil {
			if len(out) > 1<<20 {
				t.Fatalf("decoded %d bytes past the bound", len(out))
			}
			if _, err := manifest.Unmarshal(out); err != nil {
				t.Fatalf("decoded a manifest that does not parse: %v", err)
			}
		}
	})
}
