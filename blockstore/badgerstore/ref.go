package badgerstore

import (
	"encoding/binary"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// A ref is a block's index entry: where its payload lies in the packs, and
// its frame header, which the pack does not hold. Encoded as the value of
// the block's key:
//
//	byte 0       refTag
//	bytes 1-4    pack number, little endian
//	bytes 5-12   offset in the pack (a multiple of packAlign)
//	bytes 13-16  payload length
//	rest         the frame header (2 to blockstore.MaxHeaderLen bytes)
//
// Stores written before pack files hold the frame itself as the value; a
// frame starts with its codec byte (0 or 1), never refTag, so both read.
const (
	refTag    = 'P'
	refFixed  = 17
	refMaxLen = refFixed + blockstore.MaxHeaderLen
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
}

func (r *ref) header() []byte { return r.hdr[:r.hdrLen] }

// appendRef appends the encoding of r to dst.
func appendRef(dst []byte, r *ref) []byte {
	dst = append(dst, refTag)
	dst = binary.LittleEndian.AppendUint32(dst, r.pack)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.off))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.n))
	return append(dst, r.header()...)
}

// parseRef decodes an index value. isRef is false for a legacy value (a
// whole frame); a value that is neither is an error wrapping ErrCorrupt.
func parseRef(v []byte, r *ref) (isRef bool, err error) {
	if len(v) == 0 || v[0] != refTag {
		return false, nil
	}
	if len(v) < refFixed+2 || len(v) > refMaxLen {
		return true, fmt.Errorf("%w: index entry of %d bytes", blockstore.ErrCorrupt, len(v))
	}
	r.pack = binary.LittleEndian.Uint32(v[1:])
	off := binary.LittleEndian.Uint64(v[5:])
	r.n = int(binary.LittleEndian.Uint32(v[13:]))
	r.hdrLen = copy(r.hdr[:], v[refFixed:])
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
