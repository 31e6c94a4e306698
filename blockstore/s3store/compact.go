package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dvfs-project/dvfs/blockstore"
)

// CompactStats says what a Compact did.
type CompactStats struct {
	// Rewritten packs had a live share below CompactBelow; their live
	// blocks were moved and the packs deleted.
	Rewritten int
	// Orphans are pending packs older than OrphanAge, deleted.
	Orphans int
	// Moved is how many blocks were copied into new packs.
	Moved int
	// Freed is how many bytes of pack objects were deleted.
	Freed int64
}

type liveBlock struct {
	id  blockstore.ID
	raw []byte
	e   entry
}

// Compact rewrites the packs whose live share is below CompactBelow and
// removes orphaned packs (see the package doc). It reads the whole index.
func (s *Store) Compact(ctx context.Context) (CompactStats, error) {
	var st CompactStats
	if err := s.enter(ctx); err != nil {
		return st, fmt.Errorf("s3store: compact: %w", err)
	}
	defer s.exit()
	s.compactMu.Lock()
	defer s.compactMu.Unlock()

	live := map[packID][]liveBlock{}
	liveBytes := map[packID]int64{}
	err := s.meta.ListMeta(ctx, blockPrefix, func(k string, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var id blockstore.ID
		if len(k) != len(blockPrefix)+len(id) {
			return nil
		}
		copy(id[:], k[len(blockPrefix):])
		e, err := decodeEntry(v)
		if err != nil {
			s.log.Warn("s3store: bad index entry", "block", id.Short(), "err", err)
			return nil
		}
		live[e.pack] = append(live[e.pack], liveBlock{id: id, raw: bytes.Clone(v), e: e})
		liveBytes[e.pack] += e.n
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("s3store: compact: %w", err)
	}
	records := map[packID]packRecord{}
	err = s.meta.ListMeta(ctx, packPrefix, func(k string, v []byte) error {
		var p packID
		if len(k) != len(packPrefix)+len(p) {
			return nil
		}
		copy(p[:], k[len(packPrefix):])
		r, err := decodePackRecord(v)
		if err != nil {
			s.log.Warn("s3store: bad pack record", "pack", p, "err", err)
			return nil
		}
		records[p] = r
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("s3store: compact: %w", err)
	}

	var doomed []packID
	var moves []packItem
	for p, r := range records {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("s3store: compact: %w", err)
		}
		s.inflightMu.Lock()
		busy := s.inflight[p] > 0
		s.inflightMu.Unlock()
		if busy {
			continue
		}
		if !r.committed {
			if len(live[p]) == 0 && time.Since(r.born) > s.cfg.OrphanAge {
				doomed = append(doomed, p)
				st.Orphans++
			}
			continue
		}
		if r.size > 0 && float64(liveBytes[p]) >= s.cfg.CompactBelow*float64(r.size) {
			continue
		}
		if len(live[p]) > 0 {
			items, err := s.liveFrames(ctx, p, live[p])
			if err != nil {
				return st, err
			}
			moves = append(moves, items...)
		}
		doomed = append(doomed, p)
		st.Rewritten++
	}
	if err := s.writePacks(ctx, moves); err != nil {
		return st, fmt.Errorf("s3store: compact: %w", err)
	}
	st.Moved = len(moves)
	// Every entry that pointed into a doomed pack now points elsewhere or
	// is gone: only then may its object go.
	for _, p := range doomed {
		if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.objectName(p), minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
			return st, fmt.Errorf("s3store: compact: remove pack %s: %w", p, err)
		}
		if err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p)}); err != nil {
			return st, fmt.Errorf("s3store: compact: drop pack record %s: %w", p, err)
		}
		st.Freed += records[p].size
		s.log.Info("s3store: pack removed", "pack", p, "size", records[p].size, "live_blocks_moved", len(live[p]))
	}
	return st, nil
}

// liveFrames reads pack p with one GET and returns its live blocks as
// items to move. A frame that does not verify is not moved: its entry is
// dropped, so that the block reads as missing and is uploaded again.
func (s *Store) liveFrames(ctx context.Context, p packID, blocks []liveBlock) ([]packItem, error) {
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.objectName(p), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("s3store: compact: read pack %s: %w", p, err)
	}
	body, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		return nil, fmt.Errorf("s3store: compact: read pack %s: %w", p, err)
	}
	var items []packItem
	for _, b := range blocks {
		var frame []byte
		if b.e.off+b.e.n <= int64(len(body)) {
			frame = body[b.e.off : b.e.off+b.e.n]
		}
		if frame == nil || blockstore.Verify(b.id, frame) != nil {
			s.log.Warn("s3store: corrupt block dropped while compacting", "block", b.id.Short(), "pack", p)
			err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: blockKey(b.id), Check: true, Old: b.raw})
			if err != nil && !errors.Is(err, blockstore.ErrConflict) {
				return nil, fmt.Errorf("s3store: compact: %w", err)
			}
			continue
		}
		items = append(items, packItem{Block: blockstore.Block{ID: b.id, Frame: frame}, old: b.raw})
	}
	return items, nil
}
