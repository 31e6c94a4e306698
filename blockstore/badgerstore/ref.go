package badgerstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/dvfs-project/dvfs/blockstore"
)

// A ref is a block's index entry: where its payload lies in the packs, and
// its frame header, which the pack does not hold. Encoded as the value of
// the block's key:
//
//	byte 0       refTag, or refTagSum
//	bytes 1-4    pack number, little endian
//	bytes 5-12   offset in the pack (a multiple of packAlign)
//	bytes 13-16  payload length
//	bytes 17-20  refTagSum only: the payload's CRC-32C (Castagnoli)
//	rest         the frame header (2 to blockstore.MaxHeaderLen bytes)
//
// refTagSum entries are written by a store with Config.VerifiedPuts: the
// block was verified against its ID before it was put, and a read checks
// the CRC instead of hashing the block again. Stores written before pack
// files hold the frame itself as the value; a frame starts with its codec
// byte (0 or 1), never a tag, so all three read.
const (
	refTag       = 'P'
	refTagSum    = 'C'
	refFixed     = 17
	refFixedSum  = refFixed + 4
	refMaxLen    = refFixedSum + blockstore.MaxHeaderLen
	refMinHeader = 2
	// maxPayload bounds a payload: zstd may, rarely, make a block a
	// little bigger than it was.
	maxPayload = blockstore.MaxBlockSize + blockstore.MaxBlockSize/64
)

type ref struct {
	pack   uint32
	off    int64
	n      int // payload length
	hdr    [blockstore.MaxHeaderLen]byte
	hdrLen int
	// sum is the payload's CRC-32C, when hasSum.
	sum    uint32
	hasSum bool
	// cvs are the sector chaining values of a plain payload being put
	// (Config.VerifiedPuts), kept under their own key (cvKey); not part
	// of the entry.
	cvs []byte
}

func (r *ref) header() []byte { return r.hdr[:r.hdrLen] }

// castagnoli is CRC-32C, which amd64 and arm64 compute in hardware: tens
// of GB/s a core, where BLAKE3 runs at a few.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkSum checks payload against the CRC of r; a ref without one is
// accepted (the caller hashes the block instead).
func (r *ref) checkSum(payload []byte) error {
	if got := crc32.Checksum(payload, castagnoli); got != r.sum {
		return fmt.Errorf("%w: payload CRC-32C %08x, index says %08x", blockstore.ErrCorrupt, got, r.sum)
	}
	return nil
}

// appendRef appends the encoding of r to dst.
func appendRef(dst []byte, r *ref) []byte {
	if r.hasSum {
		dst = append(dst, refTagSum)
	} else {
		dst = append(dst, refTag)
	}
	dst = binary.LittleEndian.AppendUint32(dst, r.pack)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.off))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.n))
	if r.hasSum {
		dst = binary.LittleEndian.AppendUint32(dst, r.sum)
	}
	return append(dst, r.header()...)
}

// parseRef decodes an index value. isRef is false for a legacy value (a
// whole frame); a value that is neither is an error wrapping ErrCorrupt.
func parseRef(v []byte, r *ref) (isRef bool, err error) {
	if len(v) == 0 || (v[0] != refTag && v[0] != refTagSum) {
		return false, nil
	}
	fixed := refFixed
	if r.hasSum = v[0] == refTagSum; r.hasSum {
		fixed = refFixedSum
	}
	if len(v) < fixed+refMinHeader || len(v) > fixed+blockstore.MaxHeaderLen {
		return true, fmt.Errorf("%w: index entry of %d bytes", blockstore.ErrCorrupt, len(v))
	}
	r.pack = binary.LittleEndian.Uint32(v[1:])
	off := binary.LittleEndian.Uint64(v[5:])
	r.n = int(binary.LittleEndian.Uint32(v[13:]))
	r.sum = 0
	if r.hasSum {
		r.sum = binary.LittleEndian.Uint32(v[refFixed:])
	}
	r.hdrLen = copy(r.hdr[:], v[fixed:])
	switch {
	case r.pack == 0:
		return true, fmt.Errorf("%w: index entry names pack 0", blockstore.ErrCorrupt)
	case off%packAlign != 0 || off > 1<<62:
		return true, fmt.Errorf("%w: index entry offset %d", blockstore.ErrCorrupt, off)
	case r.n > maxPayload:
		return true, fmt.Errorf("%w: index entry payload of %d bytes", blockstore.ErrCorrupt, r.n)
	}
	r.off = int64(off)
	if _, _, err := blockstore.RawHeader(r.header()); err != nil {
		return true, fmt.Errorf("index entry: %w", err)
	}
	return true, nil
}
