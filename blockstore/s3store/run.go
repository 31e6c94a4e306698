package s3store

import (
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.RunGetter = (*Store)(nil)

// maxRun bounds the bytes one ranged GET of GetRun asks for.
const maxRun = 16 << 20

// GetRun implements blockstore.RunGetter. Blocks whose frames lie back to
// back in one pack, as a Put of a file's blocks in order writes them, are
// read with one ranged GET for the run instead of one per block: a
// sequential cold read of 64 KiB blocks then costs a GET per run (up to
// 16 MiB) rather than 16,384 GETs per GiB. Every block is verified as Get
// verifies; anything else is left undone, for Get.
func (s *Store) GetRun(ctx context.Context, ids []blockstore.ID, size int, dst []byte, done []bool) error {
	if size < 0 || len(dst) != len(ids)*size || len(done) != len(ids) {
		return fmt.Errorf("s3store: get run: %d blocks of %d bytes into %d bytes", len(ids), size, len(dst))
	}
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: get run: %w", err)
	}
	defer s.exit()
	entries := make([]entry, len(ids))
	ok := make([]bool, len(ids))
	for i, id := range ids {
		done[i] = false
		if id.IsHole() {
			continue
		}
		e, _, err := s.lookup(ctx, id)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3store: get run: %w", err)
		}
		if err != nil {
			continue // absent or unreadable: Get says which
		}
		n, err := blockstore.FrameLen(e.header)
		entries[i], ok[i] = e, err == nil && n == size
	}
	for i := 0; i < len(ids); {
		if !ok[i] {
			i++
			continue
		}
		first := entries[i]
		j := i + 1
		for j < len(ids) && ok[j] && entries[j].pack == first.pack &&
			entries[j].off == entries[j-1].off+entries[j-1].n && entries[j].off+entries[j].n-first.off <= maxRun {
			j++
		}
		last := entries[j-1]
		body, err := s.readRange(ctx, first.pack, first.off, last.off+last.n-first.off)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3store: get run: %w", err)
		}
		if err == nil { // else moved or damaged: Get follows it
			for k := i; k < j; k++ {
				frame := body[entries[k].off-first.off:][:entries[k].n]
				slot := dst[k*size : (k+1)*size]
				out, err := blockstore.Open(ids[k], frame, slot[:0])
				if err != nil || len(out) != size {
					continue
				}
				if size > 0 && &out[0] != &slot[0] {
					copy(slot, out)
				}
				done[k] = true
			}
		}
		i = j
	}
	return nil
}
