package s3store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

var (
	_ blockstore.RunGetter      = (*Store)(nil)
	_ blockstore.FrameRunGetter = (*Store)(nil)
)

// maxRun bounds the bytes one ranged GET of GetRun or GetFrameRun asks
// for.
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
	clear(done)
	want := func(e entry) bool {
		n, err := blockstore.FrameLen(e.header)
		return err == nil && n == size
	}
	return s.readRuns(ctx, "get run", ids, want, func(k int, _ entry, frame []byte) error {
		slot := dst[k*size : (k+1)*size]
		out, err := blockstore.Open(ids[k], frame, slot[:0])
		if err != nil || len(out) != size {
			return nil
		}
		if size > 0 && &out[0] != &slot[0] {
			copy(slot, out)
		}
		done[k] = true
		return nil
	})
}

// GetFrameRun implements blockstore.FrameRunGetter: GetRun for frames as
// stored, each checked as GetFrame checks it (the indexed header, then
// the frame against its ID). A server's fetch of blocks a Put stored in
// order then costs one ranged GET per run instead of one per block.
func (s *Store) GetFrameRun(ctx context.Context, ids []blockstore.ID, fn func(i int, frame []byte) error) error {
	return s.readRuns(ctx, "get frame run", ids, nil, func(k int, e entry, frame []byte) error {
		if !bytes.HasPrefix(frame, e.header) || blockstore.Verify(ids[k], frame) != nil {
			return nil // GetFrame reports it
		}
		return fn(k, frame)
	})
}

// readRuns looks ids up in the index and reads each stretch of them whose
// frames lie back to back in one pack (at most maxRun bytes) with one
// ranged GET, calling fn for each of its blocks, in increasing i, with
// the block's entry and its frame as read (unverified). Holes, blocks it
// cannot look up, those want (if set) refuses, and stretches whose GET
// fails (the pack moved or damaged) get no call: the per-block path
// follows them and says why. fn's error stops it; op names the call in
// other errors.
func (s *Store) readRuns(ctx context.Context, op string, ids []blockstore.ID, want func(entry) bool, fn func(i int, e entry, frame []byte) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: %s: %w", op, err)
	}
	defer s.exit()
	entries := make([]entry, len(ids))
	ok := make([]bool, len(ids))
	for i, id := range ids {
		if id.IsHole() {
			continue
		}
		e, _, err := s.lookup(ctx, id)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3store: %s: %w", op, err)
		}
		if err != nil {
			continue // absent or unreadable: the per-block path says which
		}
		entries[i], ok[i] = e, want == nil || want(e)
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
			return fmt.Errorf("s3store: %s: %w", op, err)
		}
		if err == nil { // else moved or damaged: the per-block path follows it
			for k := i; k < j; k++ {
				if err := fn(k, entries[k], body[entries[k].off-first.off:][:entries[k].n]); err != nil {
					return err
				}
			}
		}
		i = j
	}
	return nil
}
