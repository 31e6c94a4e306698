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
	seen := make(map[blockstore.ID]bool, len(blocks))
	var ids []blockstore.ID
	for _, b := range blocks {
		if b.ID.IsHole() || seen[b.ID] {
			continue
		}
		if len(b.Frame) > maxFrame {
			return fmt.Errorf("s3store: put %s: frame of %d bytes exceeds %d", b.ID.Short(), len(b.Frame), maxFrame)
		}
		if _, _, err := blockstore.SplitFrame(b.Frame); err != nil {
			return fmt.Errorf("s3store: put %s: %w", b.ID.Short(), err)
		}
		seen[b.ID] = true
		ids = append(ids, b.ID)
	}
	missing, err := s.missing(ctx, ids)
	if err != nil {
		return fmt.Errorf("s3store: put: %w", err)
	}
	want := make(map[blockstore.ID]bool, len(missing))
	for _, id := range missing {
		want[id] = true
	}
	var items []packItem
	for _, b := range blocks {
		if want[b.ID] {
			delete(want, b.ID)
			items = append(items, packItem{Block: b}) // old nil: must be absent
		}
	}
	return s.writePacks(ctx, items)
}

// packItem is a block to write into a pack and the index entry it must
// replace (nil: the block must be absent).
type packItem struct {
	blockstore.Block
	old []byte
}

// writePacks writes items into packs of up to PackSize.
func (s *Store) writePacks(ctx context.Context, items []packItem) error {
	for len(items) > 0 {
		size, n := int64(0), 0
		for n < len(items) && (n == 0 || size+int64(len(items[n].Frame)) <= s.cfg.PackSize) {
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

// writePack records a pending pack, writes it, and commits it with its
// items' entries, each on condition that the block's entry is still the
// item's old one; items whose entry changed meanwhile are left out.
func (s *Store) writePack(ctx context.Context, items []packItem, size int64) error {
	p := newPackID()
	s.inflightMu.Lock()
	s.inflight[p] = true
	s.inflightMu.Unlock()
	defer func() {
		s.inflightMu.Lock()
		delete(s.inflight, p)
		s.inflightMu.Unlock()
	}()

	body := make([]byte, 0, size)
	entries := make([][]byte, len(items))
	for i, it := range items {
		hdr, _, _ := blockstore.SplitFrame(it.Frame)
		entries[i] = appendEntry(nil, entry{pack: p, off: int64(len(body)), n: int64(len(it.Frame)), header: hdr})
		body = append(body, it.Frame...)
	}
	rec := packRecord{size: size, born: time.Now()}
	if err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p), Value: appendPackRecord(nil, rec)}); err != nil {
		return fmt.Errorf("s3store: record pack %s: %w", p, err)
	}
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.objectName(p), bytes.NewReader(body), int64(len(body)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
	if err != nil {
		return fmt.Errorf("s3store: write pack %s: %w", p, err)
	}
	rec.committed = true
	live := make([]bool, len(items))
	for i := range live {
		live[i] = true
	}
	for attempt := 0; ; attempt++ {
		ops := []blockstore.MetaOp{{Key: packKey(p), Value: appendPackRecord(nil, rec)}}
		for i, it := range items {
			if live[i] {
				ops = append(ops, blockstore.MetaOp{Key: blockKey(it.ID), Value: entries[i], Check: true, Old: it.old})
			}
		}
		err := s.meta.CommitMeta(ctx, ops...)
		if err == nil {
			return nil
		}
		if !errors.Is(err, blockstore.ErrConflict) || attempt == 10 {
			return fmt.Errorf("s3store: index pack %s: %w", p, err)
		}
		// Another Put, Delete or Compact changed some entries: keep the
		// items whose entry is still what they expect.
		for i, it := range items {
			if !live[i] {
				continue
			}
			cur, err := s.meta.GetMeta(ctx, blockKey(it.ID))
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
