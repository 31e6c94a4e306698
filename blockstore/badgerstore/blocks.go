package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
)

const (
	blockPrefix = 'b'
	metaPrefix  = 'm'
	cvPrefix    = 'v' // a cached block's sector chaining values (SectorCVs)
	blockKeyLen = 1 + blockstore.IDSize
)

// blockKey returns the key of block id, on the stack.
func blockKey(id blockstore.ID) [blockKeyLen]byte {
	var k [blockKeyLen]byte
	k[0] = blockPrefix
	copy(k[1:], id[:])
	return k
}

// errHole is returned for the hole, which is stored nowhere.
var errHole = fmt.Errorf("the hole is never stored: %w", blockstore.ErrNotFound)

// Get implements blockstore.Getter. A raw block is read by one pread
// straight into dst and hashed there; a compressed one is read into a
// pooled buffer and decoded into dst.
func (s *Store) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("badgerstore: get %s: %w", id.Short(), err)
	}
	defer s.exit()
	if id.IsHole() {
		return dst, fmt.Errorf("badgerstore: get: %w", errHole)
	}
	out, err := s.read(id, dst, s.readPlain, func(frame []byte) ([]byte, error) {
		return blockstore.Open(id, frame, dst)
	})
	if err != nil {
		return dst, s.readErr("get", id, err)
	}
	return out, nil
}

// readPlain appends the verified plain bytes of the block at r to dst.
func (s *Store) readPlain(id blockstore.ID, r *ref, dst []byte) ([]byte, error) {
	raw, n, err := blockstore.RawHeader(r.header())
	if err != nil {
		return dst, err
	}
	if raw {
		if n != r.n {
			return dst, fmt.Errorf("%w: raw payload of %d bytes, header says %d", blockstore.ErrCorrupt, r.n, n)
		}
		start := len(dst)
		out := slices.Grow(dst, n)[:start+n]
		if err := s.packs.read(r.pack, r.off, out[start:]); err != nil {
			return dst, fmt.Errorf("%w: %v", blockstore.ErrCorrupt, err)
		}
		if err := r.check(id, out[start:]); err != nil {
			return dst, err
		}
		return out, nil
	}
	bp := payloads.Get().(*[]byte)
	defer payloads.Put(bp)
	buf := slices.Grow((*bp)[:0], r.n)[:r.n]
	*bp = buf
	if err := s.packs.read(r.pack, r.off, buf); err != nil {
		return dst, fmt.Errorf("%w: %v", blockstore.ErrCorrupt, err)
	}
	if !r.hasSum {
		return blockstore.OpenSplit(id, r.header(), buf, dst)
	}
	if err := r.checkSum(buf); err != nil {
		return dst, fmt.Errorf("block %s: %w", id.Short(), err)
	}
	out, err := blockstore.DecodeSplit(dst, r.header(), buf)
	if err != nil {
		return dst, fmt.Errorf("block %s: %w", id.Short(), err)
	}
	return out, nil
}

// check checks a raw payload read from the packs: against the CRC in the
// index entry when it has one, else against the block's hash.
func (r *ref) check(id blockstore.ID, plain []byte) error {
	if !r.hasSum {
		return blockstore.CheckPlain(id, plain)
	}
	if err := r.checkSum(plain); err != nil {
		return fmt.Errorf("block %s: %w", id.Short(), err)
	}
	return nil
}

var payloads = sync.Pool{New: func() any { b := make([]byte, 0, blockstore.DefaultBlockSize); return &b }}

// GetFrame implements blockstore.FrameGetter.
func (s *Store) GetFrame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("badgerstore: get frame %s: %w", id.Short(), err)
	}
	defer s.exit()
	if id.IsHole() {
		return dst, fmt.Errorf("badgerstore: get frame: %w", errHole)
	}
	out, err := s.read(id, dst, s.readFrame, func(frame []byte) ([]byte, error) {
		if err := blockstore.Verify(id, frame); err != nil {
			return dst, err
		}
		return append(dst, frame...), nil
	})
	if err != nil {
		return dst, s.readErr("get frame", id, err)
	}
	return out, nil
}

// readFrame appends the verified frame of the block at r to dst.
func (s *Store) readFrame(id blockstore.ID, r *ref, dst []byte) ([]byte, error) {
	start := len(dst)
	out := append(dst, r.header()...)
	body := len(out)
	out = slices.Grow(out, r.n)[:body+r.n]
	if err := s.packs.read(r.pack, r.off, out[body:]); err != nil {
		return dst, fmt.Errorf("%w: %v", blockstore.ErrCorrupt, err)
	}
	var err error
	if r.hasSum {
		if err = r.checkSum(out[body:]); err != nil {
			err = fmt.Errorf("block %s: %w", id.Short(), err)
		}
	} else {
		err = blockstore.Verify(id, out[start:])
	}
	if err != nil {
		return dst, err
	}
	return out, nil
}

// lookup reads the index entry of id into r and reports whether it is a
// ref; a legacy entry (a whole frame) is passed to legacy instead, valid
// only during that call.
func (s *Store) lookup(id blockstore.ID, r *ref, legacy func(frame []byte) error) (isRef bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		isRef, err = lookupIn(txn, id, r, legacy)
		return err
	})
	return isRef, err
}

// lookupIn is lookup within txn.
func lookupIn(txn *badger.Txn, id blockstore.ID, r *ref, legacy func(frame []byte) error) (isRef bool, err error) {
	key := blockKey(id)
	item, err := txn.Get(key[:])
	if err != nil {
		return false, err
	}
	err = item.Value(func(v []byte) error {
		var err error
		if isRef, err = parseRef(v, r); err != nil || isRef {
			return err
		}
		return legacy(v)
	})
	return isRef, err
}

// read appends block id to dst: by readRef from the packs for an index
// entry, by legacy for a legacy entry (the whole frame, valid only during
// the call).
//
// A failed pack read is checked against the index again: a block deleted
// while it was read (its range punched, or its pack removed) is
// ErrKeyNotFound, and a block moved while it was read (CompressDeferred
// wrote it anew and punched the old range) is read again where it now is.
func (s *Store) read(id blockstore.ID, dst []byte,
	readRef func(blockstore.ID, *ref, []byte) ([]byte, error),
	legacy func(frame []byte) ([]byte, error)) ([]byte, error) {
	var r ref
	out := dst
	isRef, err := s.lookup(id, &r, func(frame []byte) error {
		var err error
		out, err = legacy(frame)
		return err
	})
	if err != nil || !isRef {
		return out, err
	}
	for tries := 0; ; tries++ {
		out, err = readRef(id, &r, dst)
		if err == nil || tries == maxMoves {
			break
		}
		now, moved, lerr := s.relookup(id, &r)
		if lerr != nil {
			err = lerr // ErrKeyNotFound: deleted meanwhile
			break
		}
		if !moved {
			break // still where it was read: the read's error stands
		}
		r = now
	}
	return out, err
}

// relookup looks block id up again after a failed read at r: an error
// (ErrKeyNotFound if it was deleted meanwhile), or its entry now and
// whether that names another place than r.
func (s *Store) relookup(id blockstore.ID, r *ref) (now ref, moved bool, err error) {
	isRef, err := s.lookup(id, &now, func([]byte) error { return nil })
	return now, err == nil && isRef && (now.pack != r.pack || now.off != r.off), err
}

// maxMoves bounds how often one read follows a block that moves under it;
// a block moves at most once (when its compression, deferred, is done).
const maxMoves = 2

// readErr wraps an error of Get or GetFrame, and logs corrupt blocks: they
// mean a failing disk or tampering, which an operator must hear about.
func (s *Store) readErr(op string, id blockstore.ID, err error) error {
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("badgerstore: %s %s: %w", op, id.Short(), blockstore.ErrNotFound)
	case errors.Is(err, blockstore.ErrCorrupt):
		s.log.Error("corrupt block in store", "block", id, "err", err)
		return fmt.Errorf("badgerstore: %s: %w", op, err)
	}
	return fmt.Errorf("badgerstore: %s %s: %w", op, id.Short(), err)
}

// Put implements blockstore.Putter. It finds the absent blocks in one read
// transaction (keys only, as Missing does), then writes them in one
// WriteBatch, whose commits are synced (SyncWrites) before Flush returns.
func (s *Store) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	defer s.exit()
	todo, err := s.absentBlocks(ctx, blocks)
	if err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	return s.storeBlocks(ctx, todo)
}

// absentBlocks returns the blocks the store lacks.
func (s *Store) absentBlocks(ctx context.Context, blocks []blockstore.Block) ([]blockstore.Block, error) {
	ids := make([]blockstore.ID, len(blocks))
	for i, b := range blocks {
		ids[i] = b.ID
	}
	absent, err := s.absent(ctx, ids)
	if err != nil {
		return nil, err
	}
	var todo []blockstore.Block
	for i, b := range blocks {
		if absent[i] {
			todo = append(todo, b)
		}
	}
	return todo, nil
}

// storePayloads writes the payloads of blocks to the packs, synced unless
// the store is volatile, and returns their index entries, not yet
// committed.
func (s *Store) storePayloads(blocks []blockstore.Block) ([]ref, error) {
	refs, sl, err := s.writePayloads(blocks)
	if err != nil || len(refs) == 0 {
		return refs, err
	}
	err = s.packs.sync(sl.f)
	s.packs.done(sl.num)
	if err != nil {
		return nil, err
	}
	return refs, nil
}

// writePayloads writes the payloads of blocks to the packs, not yet
// synced, and returns their index entries and the slot written, whose
// pack the caller must sync (packSet.sync) and then release
// (packSet.done).
func (s *Store) writePayloads(blocks []blockstore.Block) ([]ref, slot, error) {
	if len(blocks) == 0 {
		return nil, slot{}, nil
	}
	refs := make([]ref, len(blocks))
	bodies := make([][]byte, len(blocks))
	var total int64
	var plain []byte // VerifiedPuts: decoded payloads, back to back
	if s.verified {
		plain = make([]byte, 0, compressedPlainLen(blocks))
	}
	for i, b := range blocks {
		hdr, payload, err := blockstore.SplitFrame(b.Frame)
		if err == nil && len(payload) > maxPayload {
			err = fmt.Errorf("%w: payload of %d bytes", blockstore.ErrCorrupt, len(payload))
		}
		if err == nil && s.verified {
			hdr, payload, plain, err = plainPayload(hdr, payload, plain)
		}
		if err != nil {
			return nil, slot{}, fmt.Errorf("%s: %w", b.ID.Short(), err)
		}
		refs[i].hdrLen = copy(refs[i].hdr[:], hdr)
		refs[i].n = len(payload)
		if s.verified {
			refs[i].sum, refs[i].hasSum = crc32.Checksum(payload, castagnoli), true
			if blockstore.CVLen(len(payload)) > 0 {
				refs[i].cvs = blockstore.AppendSectorCVs(nil, payload)
			}
		}
		bodies[i] = payload
		total += alignUp(int64(len(payload)))
	}
	sl, err := s.packs.reserve(total)
	if err != nil {
		return nil, slot{}, err
	}
	if err := s.packs.write(sl, bodies); err != nil {
		s.packs.done(sl.num)
		return nil, slot{}, err
	}
	off := sl.off
	for i := range refs {
		refs[i].pack, refs[i].off = sl.num, off
		off += alignUp(int64(refs[i].n))
	}
	return refs, sl, nil
}

// compressedPlainLen is what the compressed frames of blocks decode to,
// as their headers say: writePayloads's buffer, made at once rather than
// grown block by block (a tenth of a cold-filling mount's CPU time went
// to growing it).
func compressedPlainLen(blocks []blockstore.Block) int {
	n := 0
	for _, b := range blocks {
		hdr, _, err := blockstore.SplitFrame(b.Frame)
		if err != nil {
			continue
		}
		if raw, k, err := blockstore.RawHeader(hdr); err == nil && !raw && k <= blockstore.MaxBlockSize {
			n += k
		}
	}
	return n
}

// plainPayload returns the header and payload of a raw frame holding the
// plain bytes of the frame hdr+payload: the same two for a raw frame, or
// the bytes decoded and appended to buf (returned, grown) for a
// compressed or deferred one, which is stored raw.
func plainPayload(hdr, payload, buf []byte) (rawHdr, plain, grown []byte, err error) {
	raw, n, err := blockstore.RawHeader(hdr)
	if err != nil {
		return nil, nil, buf, err
	}
	if raw && !blockstore.Deferred(hdr) {
		return hdr, payload, buf, nil
	}
	if raw {
		return blockstore.AppendRawHeader(nil, n), payload, buf, nil
	}
	// Appending may move buf; earlier payloads keep pointing into the
	// old array, which stays alive through them.
	start := len(buf)
	buf, err = blockstore.DecodeSplit(buf, hdr, payload)
	if err != nil {
		return nil, nil, buf, err
	}
	return blockstore.AppendRawHeader(nil, n), buf[start:len(buf):len(buf)], buf, nil
}

// Delete implements blockstore.Deleter. The index entries go first, in
// one batch; then each deleted payload's range is punched out of its pack,
// giving its disk space back at once.
func (s *Store) Delete(ctx context.Context, ids ...blockstore.ID) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	defer s.exit()
	if len(ids) == 0 {
		return nil
	}
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	var refs []ref
	err := s.db.View(func(txn *badger.Txn) error {
		for _, id := range ids {
			if id.IsHole() {
				continue
			}
			key := blockKey(id)
			item, err := txn.Get(key[:])
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			} else if err != nil {
				return err
			}
			var r ref
			if err := item.Value(func(v []byte) error {
				isRef, err := parseRef(v, &r)
				if isRef && err == nil {
					refs = append(refs, r)
				}
				return nil // a corrupt entry is deleted all the same
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	keys := make([]byte, len(ids)*blockKeyLen)
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badgerstore: delete: %w", err)
		}
		if id.IsHole() {
			continue
		}
		k := keys[i*blockKeyLen : (i+1)*blockKeyLen]
		k[0] = blockPrefix
		copy(k[1:], id[:])
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("badgerstore: delete %s: %w", id.Short(), err)
		}
		if s.verified {
			ck := cvKey(id)
			if err := wb.Delete(ck[:]); err != nil {
				return fmt.Errorf("badgerstore: delete %s: %w", id.Short(), err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	s.free(refs)
	return nil
}

// Walk implements blockstore.Walker by iterating over keys only.
func (s *Store) Walk(ctx context.Context, fn func(blockstore.ID) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: walk: %w", err)
	}
	defer s.exit()
	var fnErr error
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{blockPrefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != blockKeyLen {
				s.log.Warn("malformed block key in store", "key", fmt.Sprintf("%x", k))
				continue
			}
			if fnErr = fn(blockstore.ID(k[1:])); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr // fn's own error, unwrapped
	}
	if err != nil {
		return fmt.Errorf("badgerstore: walk: %w", err)
	}
	return nil
}
