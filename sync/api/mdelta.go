package api

import (
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// A clone generation's manifest is as long as the clone (32 bytes a 64 KiB
// block: 20 MiB for a 40 GiB disk) but differs from its parent's in the
// few blocks written since, and a workstation under writes commits one
// every few seconds. So a commit sends it as a delta against its parent,
// which the server has. Two encodings exist:
//
// ManifestEncodingXOR, which clients send: the manifest with its block IDs
// taken out, then every regular file's IDs XORed with those of the
// parent's file of the same path at the same index (zeros past its end),
// all compressed with zstd's fastest level, after the BLAKE3 sum of the
// manifest's encoding. Unchanged blocks become runs of zeros whatever
// moved around them (a write into a hole changes the encoding's layout),
// so a 40 GiB disk's 20 MiB manifest with 100 blocks changed travels as
// about 8 KB, encoded in tens of milliseconds (TestManifestXOR). The
// server rebuilds the manifest over its own copy of the parent and
// refuses it (400) unless the rebuilt encoding has the sum: a client and
// server that disagree about the parent never commit a wrong manifest.
//
// ManifestEncodingParent, which servers still take from older clients:
// zstd against a dictionary of the parent's block IDs (ManifestDict, named
// by dict=DictID(dictionary); another dictionary gets 422). It needs
// zstd's slower levels to match across the dictionary, and at 40 GiB it
// neither finds the matches (16 of 20 MiB sent) nor stays cheap (0.4 s a
// commit).
//
// On 422 or 400 the client sends the manifest plain. The decoded manifest
// is checked as a plain one is (manifest.Unmarshal).
const ManifestEncodingParent = "zstd-parent"

// ManifestEncodingXOR is the encoding of EncodeManifestXOR.
const ManifestEncodingXOR = "zstd-xor-parent"

// ManifestDict returns the dictionary of a manifest's children: its
// regular files' block IDs, in file order. Nil when it has none.
func ManifestDict(parent *manifest.Manifest) []byte {
	if parent == nil {
		return nil
	}
	n := 0
	for i := range parent.Files {
		n += len(parent.Files[i].Blocks)
	}
	if n == 0 {
		return nil
	}
	out := make([]byte, 0, n*blockstore.IDSize)
	for i := range parent.Files {
		for _, id := range parent.Files[i].Blocks {
			out = append(out, id[:]...)
		}
	}
	return out
}

// DictID names a dictionary: the first 16 bytes of its BLAKE3 hash, hex.
func DictID(dict []byte) string {
	id := blockstore.Sum(dict)
	return hex.EncodeToString(id[:16])
}

// window is the zstd window that lets data of n bytes match anywhere in
// a dictionary of d bytes: a power of two at least d+n.
func window(d, n int) int {
	w := 1 << bits.Len(uint(d+n))
	return max(w, zstd.MinWindowSize)
}

// EncodeManifestDelta compresses a manifest's encoding against dict.
func EncodeManifestDelta(body, dict []byte) ([]byte, error) {
	w := window(len(dict), len(body))
	if w > zstd.MaxWindowSize {
		return nil, fmt.Errorf("manifest of %d bytes against a dictionary of %d: too large", len(body), len(dict))
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderDictRaw(1, dict), zstd.WithWindowSize(w),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(body, nil), nil
}

// DecodeManifestDelta decodes what EncodeManifestDelta made with the same
// dict, refusing anything that would decode to more than max bytes. Bad
// input is an error wrapping ErrMalformed.
func DecodeManifestDelta(data, dict []byte, max int) ([]byte, error) {
	return decodeBounded(data, max, zstd.WithDecoderDictRaw(1, dict),
		zstd.WithDecoderMaxWindow(uint64(window(len(dict), max))))
}

// decodeBounded decodes one zstd stream of at most max bytes.
func decodeBounded(data []byte, max int, opts ...zstd.DOption) ([]byte, error) {
	opts = append(opts, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)))
	dec, err := zstd.NewReader(nil, opts...)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	if err := dec.Reset(&limitedBytes{b: data}); err != nil {
		return nil, fmt.Errorf("%w: manifest delta: %v", ErrMalformed, err)
	}
	out, err := io.ReadAll(io.LimitReader(dec, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest delta: %v", ErrMalformed, err)
	}
	if len(out) > max {
		return nil, fmt.Errorf("%w: manifest delta decodes to more than %d bytes", ErrMalformed, max)
	}
	return out, nil
}

// limitedBytes reads a byte slice (zstd.Decoder.Reset wants a reader to
// stream from, so that the output is bounded as it is read).
type limitedBytes struct{ b []byte }

func (l *limitedBytes) Read(p []byte) (int, error) {
	if len(l.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.b)
	l.b = l.b[n:]
	return n, nil
}

// xorCodec compresses and decompresses XOR deltas: the fastest level, as
// the deltas are runs of zeros around the IDs that changed.
var xorCodec = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
})

// idsOut returns m with every regular file's blocks holes (the same
// number): its encoding is m's without the IDs.
func idsOut(m *manifest.Manifest) *manifest.Manifest {
	out := *m
	out.Files = slices.Clone(m.Files)
	n := 0
	for i := range out.Files {
		n = max(n, len(out.Files[i].Blocks))
	}
	holes := make([]blockstore.ID, n)
	for i := range out.Files {
		if b := out.Files[i].Blocks; b != nil {
			out.Files[i].Blocks = holes[:len(b)]
		}
	}
	return &out
}

// refBlocks returns a function giving the parent's blocks of a path.
func refBlocks(parent *manifest.Manifest) func(path string) []blockstore.ID {
	byPath := make(map[string]int, len(parent.Files))
	for i := range parent.Files {
		byPath[parent.Files[i].Path] = i
	}
	return func(path string) []blockstore.ID {
		if i, ok := byPath[path]; ok {
			return parent.Files[i].Blocks
		}
		return nil
	}
}

// EncodeManifestXOR encodes m, whose encoding is body, as a delta against
// its parent's manifest (ManifestEncodingXOR).
func EncodeManifestXOR(m *manifest.Manifest, body []byte, parent *manifest.Manifest) ([]byte, error) {
	meta, err := idsOut(m).MarshalBinary()
	if err != nil {
		return nil, err
	}
	ids := 0
	for i := range m.Files {
		ids += len(m.Files[i].Blocks)
	}
	raw := make([]byte, 0, binary.MaxVarintLen64+len(meta)+ids*blockstore.IDSize)
	raw = binary.AppendUvarint(raw, uint64(len(meta)))
	raw = append(raw, meta...)
	ref := refBlocks(parent)
	for i := range m.Files {
		f := &m.Files[i]
		if f.Blocks == nil {
			continue
		}
		r := ref(f.Path)
		for j, id := range f.Blocks {
			if j < len(r) {
				subtle.XORBytes(id[:], id[:], r[j][:])
			}
			raw = append(raw, id[:]...)
		}
	}
	enc, err := xorCodec()
	if err != nil {
		return nil, err
	}
	sum := blockstore.Sum(body)
	return enc.EncodeAll(raw, append([]byte(nil), sum[:]...)), nil
}

// DecodeManifestXOR rebuilds, over the parent's manifest, the encoding of
// the manifest EncodeManifestXOR made, refusing anything that would
// decode to more than max bytes. Bad input, and a parent other than the
// encoder's, give an error wrapping ErrMalformed.
func DecodeManifestXOR(data []byte, parent *manifest.Manifest, max int) ([]byte, error) {
	if len(data) < blockstore.IDSize {
		return nil, fmt.Errorf("%w: manifest delta of %d bytes", ErrMalformed, len(data))
	}
	sum, data := blockstore.ID(data[:blockstore.IDSize]), data[blockstore.IDSize:]
	raw, err := decodeBounded(data, max)
	if err != nil {
		return nil, err
	}
	n, k := binary.Uvarint(raw)
	if k <= 0 || n > uint64(len(raw)-k) {
		return nil, fmt.Errorf("%w: manifest delta: bad length of the manifest without IDs", ErrMalformed)
	}
	m, err := manifest.Unmarshal(raw[k : k+int(n)])
	if err != nil {
		return nil, fmt.Errorf("%w: manifest delta: %v", ErrMalformed, err)
	}
	ids := raw[k+int(n):]
	ref := refBlocks(parent)
	for i := range m.Files {
		f := &m.Files[i]
		if len(f.Blocks) > len(ids)/blockstore.IDSize {
			return nil, fmt.Errorf("%w: manifest delta: %s needs %d IDs, %d left", ErrMalformed, f.Path, len(f.Blocks), len(ids)/blockstore.IDSize)
		}
		r := ref(f.Path)
		for j := range f.Blocks {
			id := blockstore.ID(ids[:blockstore.IDSize])
			if j < len(r) {
				subtle.XORBytes(id[:], id[:], r[j][:])
			}
			f.Blocks[j] = id
			ids = ids[blockstore.IDSize:]
		}
	}
	if len(ids) != 0 {
		return nil, fmt.Errorf("%w: manifest delta: %d bytes past the last file's IDs", ErrMalformed, len(ids))
	}
	body, err := m.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: manifest delta: %v", ErrMalformed, err)
	}
	if blockstore.Sum(body) != sum {
		return nil, fmt.Errorf("%w: manifest delta: the manifest rebuilt over generation %d is not the one sent (another parent?)", ErrMalformed, parent.Version)
	}
	return body, nil
}
