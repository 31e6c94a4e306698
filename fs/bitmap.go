package fs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// A bitmap says which sectors of a regular file are in its local data
// file (see sectorSize). Meta keeps it in chunks of chunkBits sectors (32
// MiB of file at 4 KiB sectors), so a sync commits only the chunks that
// changed.
const (
	chunkWords = 128
	chunkBytes = chunkWords * 8
	chunkBits  = chunkBytes * 8
)

type bitmap struct {
	words  []uint64
	dirty  map[int]bool // chunks changed since the last commit
	stored map[int]bool // chunks that have a key in Meta
}

// chunkUpdate is one chunk as it goes to Meta; nil data deletes the key.
type chunkUpdate struct {
	idx  int
	data []byte
}

func (b *bitmap) get(i int64) bool {
	w := i / 64
	return w < int64(len(b.words)) && b.words[w]&(1<<(i%64)) != 0
}

// set sets bit i and reports whether it changed.
func (b *bitmap) set(i int64) bool {
	w := int(i / 64)
	if w >= len(b.words) {
		b.words = append(b.words, make([]uint64, w+1-len(b.words))...)
	}
	m := uint64(1) << (i % 64)
	if b.words[w]&m != 0 {
		return false
	}
	b.words[w] |= m
	b.markDirty(w / chunkWords)
	return true
}

// run reports whether bit i is set and where the run of bits equal to it
// that starts at i ends: the first index in (i, limit) whose bit differs,
// or limit.
func (b *bitmap) run(i, limit int64) (bool, int64) {
	return scanRun(b.words, i, limit)
}

// scanRun is run over plain words.
func scanRun(words []uint64, i, limit int64) (bool, int64) {
	set := i/64 < int64(len(words)) && words[i/64]&(1<<(i%64)) != 0
	for j := i + 1; j < limit; {
		w := j / 64
		var word uint64
		if w < int64(len(words)) {
			word = words[w]
		} else if !set {
			return set, limit // all clear from here on
		}
		if set {
			word = ^word
		}
		if word >>= j % 64; word != 0 {
			return set, min(limit, j+int64(bits.TrailingZeros64(word)))
		}
		j = (w + 1) * 64
	}
	return set, limit
}

// setRange sets bits [from, to).
func (b *bitmap) setRange(from, to int64) {
	for i := from; i < to; i++ {
		b.set(i)
	}
}

// clearFrom clears every bit from i on.
func (b *bitmap) clearFrom(i int64) {
	for w := int(i / 64); w < len(b.words); w++ {
		m := ^uint64(0)
		if w == int(i/64) {
			m <<= i % 64
		}
		if b.words[w]&m != 0 {
			b.words[w] &^= m
			b.markDirty(w / chunkWords)
		}
	}
	if n := int((i + 63) / 64); n < len(b.words) {
		b.words = b.words[:n]
	}
}

func (b *bitmap) markDirty(chunk int) {
	if b.dirty == nil {
		b.dirty = make(map[int]bool)
	}
	b.dirty[chunk] = true
}

// count returns the number of bits set.
func (b *bitmap) count() int {
	n := 0
	for _, w := range b.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// encode returns chunk c, trailing zero bytes left off; nil if it is all
// zeros.
func (b *bitmap) encode(c int) []byte {
	out := make([]byte, 0, chunkBytes)
	for w := c * chunkWords; w < (c+1)*chunkWords && w < len(b.words); w++ {
		out = binary.LittleEndian.AppendUint64(out, b.words[w])
	}
	for len(out) > 0 && out[len(out)-1] == 0 {
		out = out[:len(out)-1]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// load sets chunk c from its encoded form, as read from Meta.
func (b *bitmap) load(c int, data []byte) error {
	if len(data) > chunkBytes || c < 0 || c >= MaxFileSize/chunkBits/512 {
		return fmt.Errorf("%w: bitmap chunk %d of %d bytes", ErrCorrupt, c, len(data))
	}
	var buf [chunkBytes]byte
	copy(buf[:], data)
	base := c * chunkWords
	if need := base + chunkWords; need > len(b.words) {
		b.words = append(b.words, make([]uint64, need-len(b.words))...)
	}
	for i := range chunkWords {
		b.words[base+i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	if b.stored == nil {
		b.stored = make(map[int]bool)
	}
	b.stored[c] = true
	return nil
}

// takeDirty returns the changed chunks and forgets that they changed.
// Chunks that are zero and not stored need no update and are left out.
func (b *bitmap) takeDirty() []chunkUpdate {
	var out []chunkUpdate
	for c := range b.dirty {
		data := b.encode(c)
		if data == nil && !b.stored[c] {
			continue
		}
		out = append(out, chunkUpdate{c, data})
	}
	b.dirty = nil
	return out
}

// untake marks chunks dirty again after a failed commit.
func (b *bitmap) untake(u []chunkUpdate) {
	for _, ch := range u {
		b.markDirty(ch.idx)
	}
}

// committed records that the updates reached Meta.
func (b *bitmap) committed(u []chunkUpdate) {
	if b.stored == nil {
		b.stored = make(map[int]bool)
	}
	for _, ch := range u {
		if ch.data == nil {
			delete(b.stored, ch.idx)
		} else {
			b.stored[ch.idx] = true
		}
	}
}

// blockSet is a plain set of block (or sector) indexes, kept in memory
// only.
type blockSet []uint64

func (s blockSet) has(i int64) bool {
	w := i / 64
	return w < int64(len(s)) && s[w]&(1<<(i%64)) != 0
}

// addRange adds [from, to).
func (s *blockSet) addRange(from, to int64) {
	for i := from; i < to; i++ {
		s.add(i)
	}
}

func (s *blockSet) add(i int64) {
	w := int(i / 64)
	if w >= len(*s) {
		*s = append(*s, make([]uint64, w+1-len(*s))...)
	}
	(*s)[w] |= 1 << (i % 64)
}

// clearFrom removes every index from i on.
func (s *blockSet) clearFrom(i int64) {
	w := int(i / 64)
	if w >= len(*s) {
		return
	}
	(*s)[w] &^= ^uint64(0) << (i % 64)
	*s = (*s)[:w+1]
}

// and returns the indexes in both s and words, in order, below limit.
func (s blockSet) and(words []uint64, limit int64) []int64 {
	var out []int64
	for w := range min(len(s), len(words)) {
		for m := s[w] & words[w]; m != 0; m &= m - 1 {
			i := int64(w)*64 + int64(bits.TrailingZeros64(m))
			if i >= limit {
				return out
			}
			out = append(out, i)
		}
	}
	return out
}

// sectorSize is the overlay's unit of copy-on-write for blocks of bs
// bytes: 4 KiB, a guest's page and the sector size of current virtual
// disks, so a 4 KiB write into a block the overlay does not hold yet
// copies nothing. Smaller blocks are their own sector; blocks over 256 KiB
// have 64 sectors, so a block's sectors always fit one uint64 mask.
func sectorSize(bs int64) int64 { return max(min(bs, 4096), bs/64) }

// sectorMask returns the bits of block bi's spb sectors (spb divides 64)
// as a mask: bit k is sector bi*spb+k.
func sectorMask(words []uint64, bi, spb int64) uint64 {
	first := bi * spb
	w := first / 64
	if w >= int64(len(words)) {
		return 0
	}
	m := words[w] >> (first % 64)
	if spb < 64 {
		m &= 1<<spb - 1
	}
	return m
}

// blockWords returns, from a bitmap of sectors with spb sectors a block,
// the bitmap of the blocks with any sector set.
func blockWords(words []uint64, spb int64) []uint64 {
	if spb == 1 {
		return slices.Clone(words)
	}
	nb := (int64(len(words))*64 + spb - 1) / spb
	out := make([]uint64, (nb+63)/64)
	for bi := range nb {
		if sectorMask(words, bi, spb) != 0 {
			out[bi/64] |= 1 << (bi % 64)
		}
	}
	for len(out) > 0 && out[len(out)-1] == 0 {
		out = out[:len(out)-1]
	}
	return out
}
