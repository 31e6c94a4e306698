package s3store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Keys in the metadata store. Each namespace has its own first byte, so
// that a caller's metadata key can never be taken for an index entry.
const (
	userPrefix  = "u" // + the caller's key: the caller's metadata
	blockPrefix = "b" // + the 32 bytes of a block ID: an entry
	packPrefix  = "p" // + a pack name: a packRecord
)

// maxFrame bounds a stored frame: a block that zstd does not shrink is
// stored raw.
const maxFrame = blockstore.MaxBlockSize + blockstore.MaxHeaderLen

// packIDLen is the length of a pack's ID, random: packs written by any
// number of servers never share a name.
const packIDLen = 16

type packID [packIDLen]byte

func (p packID) String() string { return hex.EncodeToString(p[:]) }

func blockKey(id blockstore.ID) string { return blockPrefix + string(id[:]) }

func packKey(p packID) string { return packPrefix + string(p[:]) }

// entry says where a block's frame lies: bytes [off, off+n) of a pack.
// It keeps the frame's header too, so that the frame's codec and plain
// length are known without reading the pack.
type entry struct {
	pack   packID
	off    int64
	n      int64
	header []byte
}

// entryVersion is the first byte of an encoded entry.
const entryVersion = 1

// appendEntry encodes e:
//
//	byte     entryVersion
//	16 bytes pack ID
//	uvarint  offset of the frame in the pack
//	uvarint  length of the frame
//	byte     length of the header, then the header (the frame's first bytes)
func appendEntry(dst []byte, e entry) []byte {
	dst = append(dst, entryVersion)
	dst = append(dst, e.pack[:]...)
	dst = binary.AppendUvarint(dst, uint64(e.off))
	dst = binary.AppendUvarint(dst, uint64(e.n))
	dst = append(dst, byte(len(e.header)))
	return append(dst, e.header...)
}

// maxPackSize bounds a pack's size and so every offset: S3's largest
// single PUT is 5 GiB.
const maxPackSize = 5 << 30

// decodeEntry decodes an entry made by appendEntry, checking every field:
// the metadata store is on the network or on disk, and a damaged entry
// must not send a read anywhere.
func decodeEntry(b []byte) (entry, error) {
	var e entry
	bad := func(what string) (entry, error) {
		return entry{}, fmt.Errorf("%w: index entry: %s", blockstore.ErrCorrupt, what)
	}
	if len(b) < 1+packIDLen || b[0] != entryVersion {
		return bad("unknown version or too short")
	}
	copy(e.pack[:], b[1:])
	b = b[1+packIDLen:]
	off, k := uvarint(b)
	if k <= 0 || off >= maxPackSize {
		return bad("bad offset")
	}
	b = b[k:]
	n, k := uvarint(b)
	if k <= 0 || n == 0 || n > maxFrame || off+n > maxPackSize {
		return bad("bad length")
	}
	b = b[k:]
	if len(b) < 1 || int(b[0]) != len(b)-1 || len(b)-1 > blockstore.MaxHeaderLen || uint64(len(b)-1) > n {
		return bad("bad frame header length")
	}
	h := b[1:]
	if hdr, _, err := blockstore.SplitFrame(h); err != nil || len(hdr) != len(h) {
		return bad("bad frame header")
	}
	e.off, e.n, e.header = int64(off), int64(n), append([]byte(nil), h...)
	return e, nil
}

// uvarint is binary.Uvarint that also refuses a value not in its shortest
// form, so that an entry has one encoding only.
func uvarint(b []byte) (uint64, int) {
	v, k := binary.Uvarint(b)
	if k > 0 && k != len(binary.AppendUvarint(nil, v)) {
		return 0, -1
	}
	return v, k
}
