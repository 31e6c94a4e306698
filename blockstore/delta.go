package blockstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// A delta frame carries a block as the sectors in which it differs from
// another block, its base, whose ID it names:
//
//	byte 0      codecDelta
//	uvarint     plain length of the new block (1..MaxBlockSize)
//	32 bytes    base ID; the base is exactly as long as the new block
//	1 byte      log2 of the sector size (MinDeltaSector..MaxDeltaSector)
//	8 bytes     mask of the changed sectors, little endian: bit i is the
//	            sector at i*sectorSize; no bit at or past the block's last
//	            sector, and at least one bit
//	1 byte      payload codec: deltaRaw or deltaZstd
//	rest        the changed sectors' bytes in order (the last sector of the
//	            block may be short), raw or as one zstd frame
//
// A block of n bytes has ceil(n/sectorSize) sectors, at most 64. A delta
// frame cannot be opened on its own: Decode, Open, Verify and the other
// frame functions refuse it with an error wrapping ErrCorrupt and
// ErrNeedsBase. ParseDelta reads it, and Delta.Apply rebuilds the block
// from its base's plain bytes; the rebuilt block's hash is checked by the
// caller (CheckPlain), as for any other frame.
const codecDelta = 3

// Sector sizes a delta may use.
const (
	MinDeltaSector = 512
	MaxDeltaSector = 1 << 20
	// MaxDeltaSectors is how many sectors one delta's mask covers.
	MaxDeltaSectors = 64
)

// Payload codecs of a delta frame.
const (
	deltaRaw  = 0
	deltaZstd = 1
)

// deltaFixed is the size of a delta frame's fields after its plain length:
// base ID, sector shift, mask and payload codec.
const deltaFixed = IDSize + 1 + 8 + 1

// ErrNeedsBase is wrapped (with ErrCorrupt) by the error of every frame
// function but ParseDelta given a delta frame: it cannot be opened without
// its base block.
var ErrNeedsBase = errors.New("delta frame cannot be opened without its base block")

// IsDelta reports whether frame is a delta frame (AppendDeltaFrame). It
// checks only the codec byte; ParseDelta checks the rest.
func IsDelta(frame []byte) bool { return len(frame) > 0 && frame[0] == codecDelta }

// Delta is a parsed delta frame.
type Delta struct {
	// Base is the ID of the block the delta applies to.
	Base ID
	// PlainLen is the length of the new block, and of its base.
	PlainLen int
	// SectorSize is the size of a sector, a power of two.
	SectorSize int
	// Mask has bit i set when sector i changed.
	Mask uint64
	// Sectors holds the changed sectors' bytes in order. It aliases the
	// frame when the payload was raw.
	Sectors []byte
}

// deltaSectorsLen returns how many bytes the sectors in mask hold in a
// block of plainLen bytes, whose last sector may be short.
func deltaSectorsLen(plainLen, sectorSize int, mask uint64) int {
	n := bits.OnesCount64(mask) * sectorSize
	last := (plainLen - 1) / sectorSize
	if mask&(1<<last) != 0 {
		n -= (last+1)*sectorSize - plainLen
	}
	return n
}

// checkDeltaShape checks a delta's sector size and mask against its plain
// length.
func checkDeltaShape(plainLen, sectorSize int, mask uint64) error {
	if plainLen < 1 || plainLen > MaxBlockSize {
		return fmt.Errorf("%w: delta of a block of %d bytes", ErrCorrupt, plainLen)
	}
	if sectorSize < MinDeltaSector || sectorSize > MaxDeltaSector || sectorSize&(sectorSize-1) != 0 {
		return fmt.Errorf("%w: delta sector size %d", ErrCorrupt, sectorSize)
	}
	sectors := (plainLen + sectorSize - 1) / sectorSize
	if sectors > MaxDeltaSectors {
		return fmt.Errorf("%w: delta of %d sectors of %d bytes, more than %d", ErrCorrupt, sectors, sectorSize, MaxDeltaSectors)
	}
	if mask == 0 {
		return fmt.Errorf("%w: delta changes no sector", ErrCorrupt)
	}
	if sectors < 64 && mask>>sectors != 0 {
		return fmt.Errorf("%w: delta mask %#x names sectors past the block's %d", ErrCorrupt, mask, sectors)
	}
	return nil
}

// AppendDeltaFrame appends to dst the delta frame that makes block out of
// the block base: block is the whole new plain block, and mask names the
// sectors of sectorSize bytes that differ from base (bit i: the bytes at
// i*sectorSize; the last sector is short when len(block) is not a multiple
// of sectorSize). The sectors' bytes are compressed with zstd when that
// saves at least 1/16 of them. Sectors not in mask must equal the base's:
// the frame does not carry them, and a receiver that rebuilds the block
// checks its hash.
//
// It panics on a shape ParseDelta would refuse: a sector size that is not
// a power of two in MinDeltaSector..MaxDeltaSector, more than
// MaxDeltaSectors sectors, an empty block or mask, or a mask bit past the
// block's end.
func AppendDeltaFrame(dst []byte, base ID, sectorSize int, mask uint64, block []byte) []byte {
	if err := checkDeltaShape(len(block), sectorSize, mask); err != nil {
		panic(fmt.Sprintf("blockstore: AppendDeltaFrame: %v", err))
	}
	dst, flag, raw := appendDeltaHeader(dst, base, sectorSize, mask, len(block))
	for m := mask; m != 0; m &= m - 1 {
		off := bits.TrailingZeros64(m) * sectorSize
		dst = append(dst, block[off:min(off+sectorSize, len(block))]...)
	}
	return compressDelta(dst, flag, raw)
}

// AppendDeltaFrameSectors is AppendDeltaFrame given only the new block's
// length and the sectors in mask, in the order of its bits (as a frame
// carries them), instead of the whole block: for a writer that keeps only
// the sectors it changed. It panics as AppendDeltaFrame does, and when
// sectors is not exactly the mask's sectors long.
func AppendDeltaFrameSectors(dst []byte, base ID, sectorSize int, mask uint64, blockLen int, sectors []byte) []byte {
	if err := checkDeltaShape(blockLen, sectorSize, mask); err != nil {
		panic(fmt.Sprintf("blockstore: AppendDeltaFrameSectors: %v", err))
	}
	if want := DeltaSectorBytes(blockLen, sectorSize, mask); len(sectors) != want {
		panic(fmt.Sprintf("blockstore: AppendDeltaFrameSectors: %d bytes of sectors, the mask names %d", len(sectors), want))
	}
	dst, flag, raw := appendDeltaHeader(dst, base, sectorSize, mask, blockLen)
	return compressDelta(append(dst, sectors...), flag, raw)
}

// DeltaSectorBytes returns the length of the sectors in mask of a block of
// blockLen bytes (the last sector is short when blockLen is not a multiple
// of sectorSize).
func DeltaSectorBytes(blockLen, sectorSize int, mask uint64) int {
	n := bits.OnesCount64(mask) * sectorSize
	if last := (blockLen - 1) / sectorSize; last < 64 && mask&(1<<last) != 0 {
		n -= (last+1)*sectorSize - blockLen
	}
	return n
}

// appendDeltaHeader appends a delta frame's fields up to its sectors,
// returning where the codec flag and the sectors are.
func appendDeltaHeader(dst []byte, base ID, sectorSize int, mask uint64, blockLen int) (out []byte, flag, raw int) {
	dst = append(dst, codecDelta)
	dst = binary.AppendUvarint(dst, uint64(blockLen))
	dst = append(dst, base[:]...)
	dst = append(dst, byte(bits.TrailingZeros(uint(sectorSize))))
	dst = binary.LittleEndian.AppendUint64(dst, mask)
	flag = len(dst)
	dst = append(dst, deltaRaw)
	return dst, flag, len(dst)
}

// compressDelta compresses the sectors of a delta frame (from raw on) when
// that saves at least 1/16 of them.
func compressDelta(dst []byte, flag, raw int) []byte {
	n := len(dst) - raw
	// The encoder cannot read from the slice it appends to, so it takes a
	// copy.
	e, _ := codecs()
	bp := scratch.Get().(*[]byte)
	defer scratch.Put(bp)
	z := e.EncodeAll(dst[raw:], (*bp)[:0])
	*bp = z[:0]
	if len(z) < n-n/16 {
		dst[flag] = deltaZstd
		dst = append(dst[:raw], z...)
	}
	return dst
}

// ParseDelta parses a delta frame (AppendDeltaFrame), checking every field
// against the plain length, and decompresses its sectors. Any fault gives
// an error wrapping ErrCorrupt. The Delta's Sectors may alias frame.
func ParseDelta(frame []byte) (Delta, error) {
	var d Delta
	if !IsDelta(frame) {
		return d, fmt.Errorf("%w: not a delta frame", ErrCorrupt)
	}
	l, k := binary.Uvarint(frame[1:])
	if k <= 0 || l < 1 || l > MaxBlockSize {
		return d, fmt.Errorf("%w: bad plain length in delta frame header", ErrCorrupt)
	}
	rest := frame[1+k:]
	if len(rest) < deltaFixed {
		return d, fmt.Errorf("%w: delta frame of %d bytes is too short", ErrCorrupt, len(frame))
	}
	d.PlainLen = int(l)
	d.Base = ID(rest[:IDSize])
	shift := rest[IDSize]
	if shift < 9 || shift > 20 {
		return d, fmt.Errorf("%w: delta sector size 2^%d", ErrCorrupt, shift)
	}
	d.SectorSize = 1 << shift
	d.Mask = binary.LittleEndian.Uint64(rest[IDSize+1:])
	if err := checkDeltaShape(d.PlainLen, d.SectorSize, d.Mask); err != nil {
		return d, err
	}
	want := deltaSectorsLen(d.PlainLen, d.SectorSize, d.Mask)
	payload := rest[deltaFixed:]
	switch rest[deltaFixed-1] {
	case deltaRaw:
		if len(payload) != want {
			return d, fmt.Errorf("%w: delta payload is %d bytes, its mask says %d", ErrCorrupt, len(payload), want)
		}
		d.Sectors = payload
	case deltaZstd:
		_, dec := codecs()
		// Capped at want (WithDecodeAllCapLimit): a payload that
		// decodes to more fails without allocating more.
		out, err := dec.DecodeAll(payload, make([]byte, 0, want))
		if err != nil {
			return d, fmt.Errorf("%w: delta zstd: %v", ErrCorrupt, err)
		}
		if len(out) != want {
			return d, fmt.Errorf("%w: delta payload decodes to %d bytes, its mask says %d", ErrCorrupt, len(out), want)
		}
		d.Sectors = out
	default:
		return d, fmt.Errorf("%w: delta payload codec %d", ErrCorrupt, rest[deltaFixed-1])
	}
	return d, nil
}

// Apply appends to dst the new block: base, the base's plain bytes
// (exactly PlainLen of them), with the changed sectors put in. dst must
// not overlap base. The result is not checked against any ID: the caller
// does that (CheckPlain).
func (d Delta) Apply(dst, base []byte) ([]byte, error) {
	if len(base) != d.PlainLen {
		return dst, fmt.Errorf("%w: delta of a %d-byte block applied to a base of %d bytes", ErrCorrupt, d.PlainLen, len(base))
	}
	if err := checkDeltaShape(d.PlainLen, d.SectorSize, d.Mask); err != nil {
		return dst, err
	}
	if len(d.Sectors) != deltaSectorsLen(d.PlainLen, d.SectorSize, d.Mask) {
		return dst, fmt.Errorf("%w: delta holds %d sector bytes, its mask says otherwise", ErrCorrupt, len(d.Sectors))
	}
	start := len(dst)
	out := append(slices.Grow(dst, len(base)), base...)
	block, src := out[start:], d.Sectors
	for m := d.Mask; m != 0; m &= m - 1 {
		off := bits.TrailingZeros64(m) * d.SectorSize
		src = src[copy(block[off:min(off+d.SectorSize, len(block))], src):]
	}
	return out, nil
}
