// Package memstore is an in-memory blockstore.Store and blockstore.MetaStore
// for tests only: nothing is durable, and memory grows with every block.
//
// It keeps to every contract of the interfaces (it runs the storetest
// conformance suite), verifies every block it returns like a real store does,
// and offers Corrupt, a hook that tampers with a stored frame, so tests can
// check that corrupt data is reported and never handed out.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
)

var (
	_ blockstore.Store     = (*Store)(nil)
	_ blockstore.MetaStore = (*Store)(nil)
)

// Store keeps blocks and metadata in maps. Stored slices are never modified
// in place (Corrupt replaces a frame with a modified copy), so readers may
// use them after dropping the lock.
type Store struct {
	mu     sync.RWMutex
	closed bool
	blocks map[blockstore.ID][]byte
	meta   map[string][]byte
}

// New returns an empty store.
func New() *Store {
	return &Store{
		blocks: make(map[blockstore.ID][]byte),
		meta:   make(map[string][]byte),
	}
}

// enter checks ctx and Close, and takes the read lock; the caller releases
// it.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return blockstore.ErrClosed
	}
	return nil
}

// frame returns the stored frame of id.
func (s *Store) frame(ctx context.Context, id blockstore.ID) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	f, ok := s.blocks[id]
	s.mu.RUnlock()
	if !ok {
		return nil, blockstore.ErrNotFound
	}
	return f, nil
}

// Get implements blockstore.Getter.
func (s *Store) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	f, err := s.frame(ctx, id)
	if err != nil {
		return dst, fmt.Errorf("memstore: get %s: %w", id.Short(), err)
	}
	out, err := blockstore.Open(id, f, dst)
	if err != nil {
		return dst, fmt.Errorf("memstore: get: %w", err)
	}
	return out, nil
}

// GetFrame implements blockstore.FrameGetter.
func (s *Store) GetFrame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	f, err := s.frame(ctx, id)
	if err != nil {
		return dst, fmt.Errorf("memstore: get frame %s: %w", id.Short(), err)
	}
	if err := blockstore.Verify(id, f); err != nil {
		return dst, fmt.Errorf("memstore: get frame: %w", err)
	}
	return append(dst, f...), nil
}

// Put implements blockstore.Putter. Frames are copied; holes are skipped.
func (s *Store) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: put: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: put: %w", blockstore.ErrClosed)
	}
	for _, b := range blocks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore: put: %w", err)
		}
		if b.ID.IsHole() {
			continue
		}
		if _, ok := s.blocks[b.ID]; !ok {
			s.blocks[b.ID] = bytes.Clone(b.Frame)
		}
	}
	return nil
}

// Missing implements blockstore.Checker.
func (s *Store) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("memstore: missing: %w", err)
	}
	defer s.mu.RUnlock()
	var missing []blockstore.ID
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("memstore: missing: %w", err)
		}
		if _, ok := s.blocks[id]; !ok && !id.IsHole() {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// Delete implements blockstore.Deleter.
func (s *Store) Delete(ctx context.Context, ids ...blockstore.ID) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: delete: %w", blockstore.ErrClosed)
	}
	for _, id := range ids {
		delete(s.blocks, id)
	}
	return nil
}

// Walk implements blockstore.Walker. It walks a snapshot taken when it
// starts, in Go's random map order.
func (s *Store) Walk(ctx context.Context, fn func(blockstore.ID) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("memstore: walk: %w", err)
	}
	ids := make([]blockstore.ID, 0, len(s.blocks))
	for id := range s.blocks {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore: walk: %w", err)
		}
		if err := fn(id); err != nil {
			return err
		}
	}
	return nil
}

// Close implements io.Closer. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.blocks, s.meta = nil, nil
	return nil
}

// GetMeta implements blockstore.MetaStore.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("memstore: get meta %q: %w", key, err)
	}
	defer s.mu.RUnlock()
	v, ok := s.meta[key]
	if !ok {
		return nil, fmt.Errorf("memstore: get meta %q: %w", key, blockstore.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// ListMeta implements blockstore.MetaStore. It lists a snapshot taken when
// it starts, so fn may call the store.
func (s *Store) ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("memstore: list meta %q: %w", prefix, err)
	}
	var keys []string
	snap := make(map[string][]byte)
	for k, v := range s.meta {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
			snap[k] = v
		}
	}
	s.mu.RUnlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore: list meta %q: %w", prefix, err)
		}
		// A copy, so that fn cannot change the store through it.
		if err := fn(k, append([]byte{}, snap[k]...)); err != nil {
			return err
		}
	}
	return nil
}

// CommitMeta implements blockstore.MetaStore. Ops apply in order, each
// Check seeing the effect of the ops before it.
func (s *Store) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: commit meta: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("memstore: commit meta: %w", blockstore.ErrClosed)
	}
	// Stage the writes; nil in staged means deleted.
	staged := make(map[string][]byte)
	current := func(key string) ([]byte, bool) {
		if v, ok := staged[key]; ok {
			return v, v != nil
		}
		v, ok := s.meta[key]
		return v, ok
	}
	for _, op := range ops {
		if op.Check {
			v, ok := current(op.Key)
			if ok != (op.Old != nil) || !bytes.Equal(v, op.Old) {
				return fmt.Errorf("memstore: commit meta %q: %w", op.Key, blockstore.ErrConflict)
			}
		}
		if op.Value == nil {
			staged[op.Key] = nil
		} else {
			staged[op.Key] = append([]byte{}, op.Value...)
		}
	}
	for k, v := range staged {
		if v == nil {
			delete(s.meta, k)
		} else {
			s.meta[k] = v
		}
	}
	return nil
}

// Corrupt flips one bit of the stored frame of id, a test hook that stands
// for a bit flip on disk. It reports whether the block was there.
func (s *Store) Corrupt(id blockstore.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.blocks[id]
	if !ok {
		return false
	}
	f = bytes.Clone(f)
	f[len(f)-1] ^= 0x01
	s.blocks[id] = f
	return true
}

var _ blockstore.Compressor = (*Store)(nil)

// CompressDeferred implements blockstore.Compressor. A damaged block is
// left as it is, for Get to report.
func (s *Store) CompressDeferred(ctx context.Context, max int) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: compress: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("memstore: compress: %w", blockstore.ErrClosed)
	}
	n := 0
	for id, f := range s.blocks {
		if n == max {
			break
		}
		if !blockstore.Deferred(f) {
			continue
		}
		plain, err := blockstore.Open(id, f, nil)
		if err != nil {
			continue
		}
		s.blocks[id] = blockstore.Encode(nil, plain)
		n++
	}
	return n, nil
}
