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

	// Records first, then entries: a pack committed after the records
	// were listed is not judged, and one committed before has all its
	// entries in the listings that follow (a Put commits a pack's record
	// and entries in one transaction).
	records := map[packID]packRecord{}
	pendingRaw := map[packID][]byte{}
	if err := s.listPackRecords(ctx, func(p packID, raw []byte, r packRecord) {
		records[p] = r
		if !r.committed {
			pendingRaw[p] = bytes.Clone(raw)
		}
	}); err != nil {
		return st, err
	}
	if s.afterRecords != nil {
		s.afterRecords()
	}
	liveBytes := map[packID]int64{}
	if err := s.listEntries(ctx, func(id blockstore.ID, raw []byte, e entry) {
		liveBytes[e.pack] += e.n
	}); err != nil {
		return st, err
	}
	doomed := map[packID]bool{}
	for p, r := range records {
		s.inflightMu.Lock()
		busy := s.inflight[p] > 0
		s.inflightMu.Unlock()
		switch {
		case busy:
		case !r.committed:
			if liveBytes[p] == 0 && time.Since(r.born) > s.cfg.OrphanAge {
				ok, err := s.condemn(ctx, p, r, pendingRaw[p])
				if err != nil {
					return st, err
				}
				if ok {
					doomed[p] = true
					st.Orphans++
				}
			}
		case r.size == 0 || float64(liveBytes[p]) < s.cfg.CompactBelow*float64(r.size):
			doomed[p] = true
			st.Rewritten++
		}
	}
	if len(doomed) == 0 {
		return st, nil
	}
	// The doomed packs' live blocks, listed again: only theirs are kept
	// in memory.
	live := map[packID][]liveBlock{}
	if err := s.listEntries(ctx, func(id blockstore.ID, raw []byte, e entry) {
		if doomed[e.pack] {
			live[e.pack] = append(live[e.pack], liveBlock{id: id, raw: bytes.Clone(raw), e: e})
		}
	}); err != nil {
		return st, err
	}

	// Move the live blocks a pack's worth at a time, and after each batch
	// remove the packs it emptied: memory stays about two packs.
	var moves []packItem
	var movesSize int64
	var emptied []packID
	flush := func() error {
		if err := s.writePacks(ctx, moves); err != nil {
			return fmt.Errorf("s3store: compact: %w", err)
		}
		st.Moved += len(moves)
		// Every entry that pointed into these packs now points elsewhere
		// or is gone: only now may their objects go.
		for _, p := range emptied {
			if err := s.removePack(ctx, p); err != nil {
				return err
			}
			st.Freed += records[p].size
			s.log.Info("s3store: pack removed", "pack", p, "size", records[p].size, "live_blocks_moved", len(live[p]))
		}
		moves, movesSize, emptied = nil, 0, nil
		return nil
	}
	for p := range doomed {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("s3store: compact: %w", err)
		}
		if len(live[p]) > 0 {
			items, err := s.liveFrames(ctx, p, live[p])
			if errors.Is(err, errPackGone) {
				// Another server compacted p since it was listed: its
				// blocks are moved, and that server drops its record.
				s.log.Info("s3store: pack gone while compacting, left to whoever removed it", "pack", p)
				st.Rewritten--
				continue
			}
			if err != nil {
				return st, err
			}
			for _, it := range items {
				moves = append(moves, it)
				movesSize += int64(len(it.Frame))
			}
		}
		emptied = append(emptied, p)
		if movesSize >= s.cfg.PackSize {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	return st, flush()
}

// listPackRecords calls fn for every well-formed pack record; fn must not
// keep raw.
func (s *Store) listPackRecords(ctx context.Context, fn func(p packID, raw []byte, r packRecord)) error {
	err := s.meta.ListMeta(ctx, packPrefix, func(k string, v []byte) error {
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
		fn(p, v, r)
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3store: compact: %w", err)
	}
	return nil
}

// listEntries calls fn for every well-formed index entry; fn must not
// keep raw.
func (s *Store) listEntries(ctx context.Context, fn func(id blockstore.ID, raw []byte, e entry)) error {
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
		fn(id, v, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("s3store: compact: %w", err)
	}
	return nil
}

// condemn marks pending pack p, whose record was raw when listed, as an
// orphan to remove: it rewrites the record as born at the epoch, on
// condition that it is still raw. A Put that commits p first keeps it
// (false); one that would commit it after fails, as its commit is
// conditional on its own pending record (indexPack), so no entry comes
// to point at p once its object is removed. A crash before the removal
// leaves a record that the next Compact finds old and removes.
func (s *Store) condemn(ctx context.Context, p packID, r packRecord, raw []byte) (bool, error) {
	r.born = time.Unix(0, 0)
	err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p), Value: appendPackRecord(nil, r), Check: true, Old: raw})
	switch {
	case errors.Is(err, blockstore.ErrConflict):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("s3store: compact: condemn pack %s: %w", p, err)
	}
	return true, nil
}

// removePack deletes pack p's object, then its record: a crash between
// the two leaves a record without an object, which the next Compact
// finds empty and drops.
func (s *Store) removePack(ctx context.Context, p packID) error {
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.objectName(p), minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
		return fmt.Errorf("s3store: compact: remove pack %s: %w", p, err)
	}
	if err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p)}); err != nil {
		return fmt.Errorf("s3store: compact: drop pack record %s: %w", p, err)
	}
	return nil
}

// errPackGone is liveFrames' error when the pack's object does not exist.
var errPackGone = errors.New("pack object gone")

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
	if isNoSuchKey(err) {
		return nil, fmt.Errorf("s3store: compact: read pack %s: %w", p, errPackGone)
	}
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
