package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Put implements blockstore.Putter. The blocks the store lacks go into
// packs of up to Config.PackSize, each written with one PUT and then
// indexed in one metadata commit, so every block is durable when Put
// returns.
func (s *Store) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: put: %w", err)
	}
	defer s.exit()
	todo, err := s.absent(ctx, blocks)
	if err != nil {
		return fmt.Errorf("s3store: put: %w", err)
	}
	items := make([]packItem, len(todo))
	for i, b := range todo {
		items[i] = packItem{Block: b} // old nil: must be absent
	}
	return s.writePacks(ctx, items)
}

// absent checks blocks and returns those the store lacks, once each, in
// the order given.
func (s *Store) absent(ctx context.Context, blocks []blockstore.Block) ([]blockstore.Block, error) {
	seen := make(map[blockstore.ID]bool, len(blocks))
	var ids []blockstore.ID
	for _, b := range blocks {
		if b.ID.IsHole() || seen[b.ID] {
			continue
		}
		if len(b.Frame) > maxFrame {
			return nil, fmt.Errorf("block %s: frame of %d bytes exceeds %d", b.ID.Short(), len(b.Frame), maxFrame)
		}
		if _, _, err := blockstore.SplitFrame(b.Frame); err != nil {
			return nil, fmt.Errorf("block %s: %w", b.ID.Short(), err)
		}
		seen[b.ID] = true
		ids = append(ids, b.ID)
	}
	missing, err := s.missing(ctx, ids)
	if err != nil {
		return nil, err
	}
	want := make(map[blockstore.ID]bool, len(missing))
	for _, id := range missing {
		want[id] = true
	}
	var out []blockstore.Block
	for _, b := range blocks {
		if want[b.ID] {
			delete(want, b.ID)
			out = append(out, b)
		}
	}
	return out, nil
}

// packItem is a block to write into a pack and the index entry it must
// replace (nil: the block must be absent).
type packItem struct {
	blockstore.Block
	old []byte
}

// writePacks writes items into packs of up to PackSize (and
// MaxCommitOps-1 blocks).
func (s *Store) writePacks(ctx context.Context, items []packItem) error {
	for len(items) > 0 {
		size, n := int64(0), 0
		for n < len(items) && (n == 0 || !s.packFull(n, size, int64(len(items[n].Frame)))) {
			size += int64(len(items[n].Frame))
			n++
		}
		if err := s.writePack(ctx, items[:n], size); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

// writePack writes items into a new pack and indexes them, each on
// condition that the block's entry is still the item's old one; items
// whose entry changed meanwhile are left out.
func (s *Store) writePack(ctx context.Context, items []packItem, size int64) error {
	p := newPackID()
	s.setInflight(p, 1)
	defer s.setInflight(p, -1)
	body := make([]byte, 0, size)
	index := make([]indexItem, len(items))
	for i, it := range items {
		index[i] = indexItem{id: it.ID, entry: frameEntry(p, int64(len(body)), it.Frame), old: it.old}
		body = append(body, it.Frame...)
	}
	rec, err := s.uploadPack(ctx, p, body)
	if err != nil {
		return err
	}
	return s.indexPack(ctx, p, rec, index)
}

// frameEntry encodes the entry of a frame at off in pack p.
func frameEntry(p packID, off int64, frame []byte) []byte {
	hdr, _, _ := blockstore.SplitFrame(frame)
	return appendEntry(nil, entry{pack: p, off: off, n: int64(len(frame)), header: hdr})
}

// setInflight counts d more (or fewer) users of pack p in this process,
// which Compact leaves alone while there are any.
func (s *Store) setInflight(p packID, d int) {
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if s.inflight[p] += d; s.inflight[p] <= 0 {
		delete(s.inflight, p)
	}
}

// uploadPack records pack p as pending and writes it, and returns the
// record to commit it with.
func (s *Store) uploadPack(ctx context.Context, p packID, body []byte) (packRecord, error) {
	rec := packRecord{size: int64(len(body)), born: time.Now()}
	if err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p), Value: appendPackRecord(nil, rec)}); err != nil {
		return rec, fmt.Errorf("s3store: record pack %s: %w", p, err)
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.objectName(p), bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		return rec, fmt.Errorf("s3store: write pack %s: %w", p, err)
	}
	rec.committed = true
	return rec, nil
}

// indexItem is the entry of a block to commit, on condition that the
// block's current entry is old (nil: absent).
type indexItem struct {
	id         blockstore.ID
	entry, old []byte
}

// errOrphaned is indexPack's error when another server's Compact removed
// the pack before it was indexed: took it for an orphan (its Put took
// longer than OrphanAge), or, staged, rewrote it from the blocks already
// indexed.
var errOrphaned = errors.New("pack removed by a Compact before it was indexed")

// indexPack commits pack p's record and items in one transaction, leaving
// out the items whose condition no longer holds. The record must still be
// the one this store wrote (pending, or committed by an earlier
// CommitStaged of the same pack): a pack condemned as an orphan or
// removed by a Compact is never indexed.
func (s *Store) indexPack(ctx context.Context, p packID, rec packRecord, items []indexItem) error {
	live := make([]bool, len(items))
	for i := range live {
		live[i] = true
	}
	pending := rec
	pending.committed = false
	pendingRaw, committedRaw := appendPackRecord(nil, pending), appendPackRecord(nil, rec)
	// A staged pack is indexed by each CommitStaged of its blocks: the
	// first finds it pending, the others committed.
	want := pendingRaw
	for attempt := 0; ; attempt++ {
		ops := []blockstore.MetaOp{{Key: packKey(p), Value: committedRaw, Check: true, Old: want}}
		for i, it := range items {
			if live[i] {
				ops = append(ops, blockstore.MetaOp{Key: blockKey(it.id), Value: it.entry, Check: true, Old: it.old})
			}
		}
		err := s.meta.CommitMeta(ctx, ops...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, blockstore.ErrConflict) || attempt == 10 {
			return fmt.Errorf("s3store: index pack %s: %w", p, err)
		}
		cur, err := s.meta.GetMeta(ctx, packKey(p))
		if err != nil && !errors.Is(err, blockstore.ErrNotFound) {
			return fmt.Errorf("s3store: index pack %s: %w", p, err)
		}
		if bytes.Equal(cur, pendingRaw) || bytes.Equal(cur, committedRaw) {
			want = cur
		} else {
			// The object may have been written after its remover
			// removed it: nothing else will.
			if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.objectName(p), minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
				s.log.Warn("s3store: orphaned pack left in the bucket", "pack", p, "err", err)
			}
			return fmt.Errorf("s3store: index pack %s: %w", p, errOrphaned)
		}
		// Another Put, Delete or Compact changed some entries: keep the
		// items whose entry is still what they expect.
		for i, it := range items {
			if !live[i] {
				continue
			}
			cur, err := s.meta.GetMeta(ctx, blockKey(it.id))
			switch {
			case errors.Is(err, blockstore.ErrNotFound):
				live[i] = it.old == nil
			case err != nil:
				return fmt.Errorf("s3store: index pack %s: %w", p, err)
			default:
				live[i] = it.old != nil && bytes.Equal(cur, it.old)
			}
		}
	}
}
