package blockstore

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"lukechampine.com/blake3/guts"
)

// A block's ID is the BLAKE3 hash of its bytes, and BLAKE3 is a binary
// tree over 1 KiB chunks: the hash of a block of 2^k sectors of CVSector
// bytes is a function of the chaining values of those sectors' subtrees.
// Keeping a block's sector chaining values lets the ID of that block with
// a few sectors replaced be found by hashing only the new sectors and
// merging: a workstation's seal of a 4 KiB guest write into a cached
// 64 KiB template block then reads and hashes 4 KiB, not 64.

// CVSector is the size of the subtrees whose chaining values are kept: the
// overlay's sector, a guest's page.
const CVSector = 4096

// CVSize is the size of one chaining value.
const CVSize = 32

// CVLen returns the length of the sector chaining values of a block of n
// bytes (CVSize per sector), or 0 when a block of that length has none:
// only blocks of a power-of-two count of whole sectors, at least two,
// have them (any other length's tree does not split at sector bounds).
func CVLen(n int) int {
	s := n / CVSector
	if n%CVSector != 0 || s < 2 || s&(s-1) != 0 || n > MaxBlockSize {
		return 0
	}
	return s * CVSize
}

// AppendSectorCVs appends the sector chaining values of block b to dst; b's
// length must have them (CVLen(len(b)) > 0).
func AppendSectorCVs(dst, b []byte) []byte {
	if CVLen(len(b)) == 0 {
		panic(fmt.Sprintf("blockstore: AppendSectorCVs of a %d-byte block", len(b)))
	}
	var buf [guts.MaxSIMD * guts.ChunkSize]byte
	for s := 0; s < len(b); s += CVSector {
		dst = appendCV(dst, sectorCV(&buf, b[s:s+CVSector], s/CVSector))
	}
	return dst
}

// sectorCV returns the chaining value of sector i (CVSector bytes p) of a
// block; buf is scratch.
func sectorCV(buf *[guts.MaxSIMD * guts.ChunkSize]byte, p []byte, i int) [8]uint32 {
	copy(buf[:], p)
	n := guts.CompressBuffer(buf, CVSector, &guts.IV, uint64(i*(CVSector/guts.ChunkSize)), 0)
	return guts.ChainingValue(n)
}

func appendCV(dst []byte, cv [8]uint32) []byte {
	for _, w := range cv {
		dst = binary.LittleEndian.AppendUint32(dst, w)
	}
	return dst
}

func readCV(b []byte) (cv [8]uint32) {
	for i := range cv {
		cv[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return cv
}

// RootOfCVs returns the ID of the block whose sector chaining values are
// cvs (CVSize bytes each, a power-of-two count of at least two).
func RootOfCVs(cvs []byte) (ID, error) {
	n := len(cvs) / CVSize
	if len(cvs)%CVSize != 0 || n < 2 || n&(n-1) != 0 || n*CVSector > MaxBlockSize {
		return ID{}, fmt.Errorf("%w: %d bytes of sector chaining values", ErrCorrupt, len(cvs))
	}
	level := make([][8]uint32, n)
	for i := range level {
		level[i] = readCV(cvs[i*CVSize:])
	}
	return rootOf(level), nil
}

// rootOf merges a power-of-two count (at least two) of subtree chaining
// values, left to right, into the root hash; level is overwritten.
func rootOf(level [][8]uint32) ID {
	for len(level) > 2 {
		for i := 0; i < len(level)/2; i++ {
			level[i] = guts.ChainingValue(guts.ParentNode(level[2*i], level[2*i+1], &guts.IV, 0))
		}
		level = level[:len(level)/2]
	}
	root := guts.ParentNode(level[0], level[1], &guts.IV, guts.FlagRoot)
	out := guts.WordsToBytes(guts.CompressNode(root))
	return ID(out[:IDSize])
}

// SumReplaced returns the ID, and appends to dst the sector chaining
// values, of the block whose sector chaining values are base's except the
// sectors in mask (bit i: sector i), whose bytes are sectors, CVSector
// each, in the order of the mask's bits. base comes from AppendSectorCVs
// (or an earlier SumReplaced) of a block the caller trusts.
func SumReplaced(dst, base []byte, mask uint64, sectors []byte) (ID, []byte, error) {
	n := len(base) / CVSize
	switch {
	case len(base)%CVSize != 0 || n < 2 || n&(n-1) != 0 || n > 64 || n*CVSector > MaxBlockSize:
		return ID{}, dst, fmt.Errorf("blockstore: %d bytes of sector chaining values", len(base))
	case n < 64 && mask>>n != 0:
		return ID{}, dst, fmt.Errorf("blockstore: mask %x past %d sectors", mask, n)
	case len(sectors) != bits.OnesCount64(mask)*CVSector:
		return ID{}, dst, fmt.Errorf("blockstore: %d bytes for %d sectors", len(sectors), bits.OnesCount64(mask))
	}
	var buf [guts.MaxSIMD * guts.ChunkSize]byte
	var arr [64][8]uint32
	level := arr[:n]
	for i := range level {
		if mask&(1<<i) != 0 {
			level[i] = sectorCV(&buf, sectors[:CVSector], i)
			sectors = sectors[CVSector:]
		} else {
			level[i] = readCV(base[i*CVSize:])
		}
	}
	for _, cv := range level {
		dst = appendCV(dst, cv)
	}
	return rootOf(level), dst, nil
}
