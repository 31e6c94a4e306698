package api

import (
	"bytes"
	"errors"
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
