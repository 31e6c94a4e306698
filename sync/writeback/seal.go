package writeback

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// known remembers the IDs of a clone's local blocks as last sealed, so a
// seal reads only the blocks written since. After a restart it is empty
// and the filesystem reports every local block dirty once.
type known map[uint64][]idOK

type idOK struct {
	id   blockstore.ID
	ok   bool
	full bool // the block was a whole block long
	// cvs are the block's sector chaining values when it was sealed from
	// its sectors (nil otherwise, or past maxKnownCVs): the next seal of
	// the block, against it, can then hash only the sectors written since.
	cvs []byte
}

// maxKnownCVs bounds the sealed blocks of a clone whose chaining values
// are kept between seals (512 bytes each for 64 KiB blocks): 32 MiB.
const maxKnownCVs = 1 << 16

// sealed is a sealed generation: its tree, and the outbox file ("" for
// none) that holds the blocks no earlier seal made, durably.
type sealed struct {
	m      *manifest.Manifest
	file   string
	blocks int // blocks in file
	// sectorsOnly counts the blocks of file kept as their written sectors.
	sectorsOnly int
	// changes is the overlay's change count when the seal held changes
	// off (see changeCounter).
	changes uint64

	held, synced time.Duration // changes held off; then the file's sync
}

// seal captures the clone. While the clone's changes are held off, it reads
// the blocks changed since the last seal, hashes them and writes them to a
// new outbox file (in the page cache: this copy is what the generation
// holds, whatever the clone does next); then, with changes running again,
// it makes the file durable.
func (c *cloneWB) seal(ctx context.Context) (sealed, error) {
	var m *manifest.Manifest
	var next known
	ob := c.w.outbox.create(c.w.outboxName(c.name))
	start := time.Now()
	var changes uint64
	err := c.w.cfg.Overlay.Seal(ctx, c.name, func(entries []Entry, r Reader) error {
		changes, _ = c.overlayChanges()
		var err error
		m, next, err = c.build(ctx, entries, r, ob)
		return err
	})
	held := time.Since(start)
	if err == nil {
		err = ob.finish()
	}
	if err != nil {
		ob.abort()
		// The marks may be clear (the copy is lost with the file): what
		// the next seal knows must come from the overlay again.
		c.known = nil
		return sealed{}, err
	}
	c.known = next
	return sealed{m: m, file: ob.file(), blocks: ob.blocks, sectorsOnly: ob.sectorsOnly, changes: changes, held: held, synced: time.Since(start) - held}, nil
}

// sealWorkers read, hash and write out changed blocks in parallel (the read
// function allows it): one core hashes while the other copies.
const sealWorkers = 2

// blockJob is a changed local block for the seal's workers to read.
type blockJob struct {
	path string
	ino  uint64
	b    int64 // block index
	l    int64 // its length
	d    delta // how it differs from a block the server has, if known
	// baseCVs are d.base's sector chaining values when the last seal kept
	// them (d.base is that seal's block); else the cache is asked.
	baseCVs []byte
	id      *blockstore.ID
	known   *idOK
}

// build makes the manifest of the sealed entries; the blocks it reads go
// to ob (each ID once).
//
// A whole block that differs from a block the cache holds by the sectors
// of its delta (the first write into a template block, most often) is
// sealed from those sectors alone when the cache gives that block's
// sector chaining values: the new block's ID is their merge with the
// written sectors' (blockstore.SumReplaced), and the outbox keeps only
// the sectors. Any other block, or any failure on that way, is read
// whole and hashed.
func (c *cloneWB) build(ctx context.Context, entries []Entry, r Reader, ob *outboxWriter) (*manifest.Manifest, known, error) {
	base := c.base
	bs := int64(base.BlockSize)
	m := &manifest.Manifest{Kind: manifest.KindClone, Name: c.name, BlockSize: base.BlockSize, Owners: true}
	// first maps an inode to the index in m.Files of its first name, for
	// the further names (hard links) that follow it in path order.
	first := make(map[uint64]int)
	next := make(known, len(entries))
	var seenMu sync.Mutex
	seen := make(map[blockstore.ID]bool)
	// record adds block id to the outbox once; rec holds it (or with
	// d.whole its sectors) from outboxRecHdr on.
	record := func(id blockstore.ID, rec []byte, d delta) (blockstore.ID, error) {
		seenMu.Lock()
		dup := seen[id]
		seen[id] = true
		seenMu.Unlock()
		if dup {
			return id, nil
		}
		return id, ob.add(id, rec, d)
	}
	// put adds a whole block to the outbox.
	put := func(rec []byte, d delta) (blockstore.ID, error) {
		plain := rec[outboxRecHdr:]
		if blockstore.IsZero(plain) {
			return blockstore.Hole, nil
		}
		return record(blockstore.Sum(plain), rec, d)
	}
	cvs, _ := c.w.cfg.Blocks.(SectorCVer)
	var zero blockstore.ID // the ID of a block of bs zeros: the hole
	if cvs != nil && blockstore.CVLen(int(bs)) > 0 {
		zero = blockstore.Sum(make([]byte, bs))
	} else {
		cvs = nil
	}
	var kept atomic.Int64 // blocks whose chaining values next keeps
	// sectors seals job j from its delta's sectors, if it can: ok is
	// false when the block must be read whole instead.
	sectors := func(ctx context.Context, j blockJob, rec []byte, scratch *[]byte) (id blockstore.ID, ok bool, err error) {
		if !j.d.ok() || j.l != bs || j.d.sectorSize != blockstore.CVSector {
			return id, false, nil
		}
		base := j.baseCVs
		if base == nil {
			var err error
			if base, err = cvs.SectorCVs(ctx, j.d.base, (*scratch)[:0]); err != nil {
				return id, false, ctx.Err()
			}
			*scratch = base
		}
		sec, err := r.ReadSectors(j.ino, j.b, j.d.mask, rec[:outboxRecHdr])
		if err != nil {
			return id, false, ctx.Err()
		}
		keep := kept.Add(1) <= maxKnownCVs
		if !keep {
			kept.Add(-1)
		}
		id, newCVs, err := blockstore.SumReplaced(nil, base, j.d.mask, sec[outboxRecHdr:])
		if err != nil {
			return id, false, nil
		}
		if keep {
			j.known.cvs = newCVs
		}
		if id == zero {
			return blockstore.Hole, true, nil
		}
		d := j.d
		d.whole = int(bs)
		id, err = record(id, sec, d)
		return id, err == nil, err
	}

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan blockJob, 64)
	for range sealWorkers {
		g.Go(func() error {
			rec := make([]byte, outboxRecHdr+bs)
			var scratch []byte
			for j := range jobs {
				if cvs != nil {
					id, ok, err := sectors(gctx, j, rec, &scratch)
					if err != nil {
						return fmt.Errorf("%s block %d: %w", j.path, j.b, err)
					}
					if ok {
						*j.id = id
						j.known.id, j.known.ok, j.known.full = id, true, true
						continue
					}
				}
				p, err := r.ReadBlock(j.ino, j.b, rec[outboxRecHdr:outboxRecHdr])
				if err != nil {
					return fmt.Errorf("%s block %d: %w", j.path, j.b, err)
				}
				if int64(len(p)) != j.l {
					return fmt.Errorf("%s block %d: read %d bytes, want %d", j.path, j.b, len(p), j.l)
				}
				r := rec[:outboxRecHdr+len(p)]
				if len(p) > 0 && &p[0] != &r[outboxRecHdr] {
					copy(r[outboxRecHdr:], p) // read made its own buffer
				}
				id, err := put(r, j.d)
				if err != nil {
					return err
				}
				*j.id, *j.known = id, idOK{id: id, ok: true, full: j.l == bs}
			}
			return nil
		})
	}
	walk := func() error {
		defer close(jobs)
		for i := range entries {
			e := &entries[i]
			f := manifest.File{Path: e.Path, Mode: e.Mode, MTime: e.MTime, ATime: e.ATime,
				UID: e.UID, GID: e.GID, Rdev: e.Rdev, Target: e.Target}
			if !e.Mode.IsDir() {
				if p, ok := first[e.Ino]; ok {
					// Another name: the first's fields, its blocks
					// (filled in by the same jobs) shared.
					l := m.Files[p]
					l.Path, l.Link = e.Path, l.Path
					m.Files = append(m.Files, l)
					continue
				}
				first[e.Ino] = len(m.Files)
			}
			if !e.Mode.IsRegular() {
				m.Files = append(m.Files, f)
				continue
			}
			f.Size = e.Size
			n := (e.Size + bs - 1) / bs
			f.Blocks = make([]blockstore.ID, n)
			var bf *manifest.File
			if e.BasePath != "" {
				bf, _ = base.Lookup(e.BasePath)
				if bf != nil && !bf.Mode.IsRegular() {
					bf = nil
				}
			}
			dirty := make(map[int64]int, len(e.Dirty))
			for i, d := range e.Dirty {
				dirty[d] = i
			}
			prev := c.known[e.Ino]
			ids := make([]idOK, n)
			for b := range n {
				off := b * bs
				l := min(bs, e.Size-off)
				if e.local(b) {
					di, isDirty := dirty[b]
					if !isDirty && b < int64(len(prev)) && prev[b].ok {
						ids[b] = prev[b]
						if prev[b].cvs != nil {
							kept.Add(1)
						}
						f.Blocks[b] = prev[b].id
						continue
					}
					var d delta
					if isDirty && l == bs {
						d = e.delta(di, b, bs, prev, bf)
					}
					var baseCVs []byte
					if d.ok() && b < int64(len(prev)) && prev[b].ok && d.base == prev[b].id {
						baseCVs = prev[b].cvs
					}
					select {
					case jobs <- blockJob{path: e.Path, ino: e.Ino, b: b, l: l, d: d, baseCVs: baseCVs, id: &f.Blocks[b], known: &ids[b]}:
					case <-gctx.Done():
						return gctx.Err()
					}
					continue
				}
				id, err := c.baseBlock(gctx, bf, e.BaseSize, b, l, put)
				if err != nil {
					return fmt.Errorf("%s block %d: %w", e.Path, b, err)
				}
				f.Blocks[b] = id
			}
			next[e.Ino] = ids
			m.Files = append(m.Files, f)
		}
		return nil
	}
	err := walk()
	if werr := g.Wait(); err == nil || errors.Is(err, context.Canceled) && werr != nil {
		err = werr
	}
	if err != nil {
		return nil, nil, err
	}
	return m, next, nil
}

// baseBlock returns the ID of block b (l bytes) of a file whose block is not
// local: the base file's block when it is whole and unchanged, else a block
// rebuilt from the base's bytes below baseSize and zeros.
func (c *cloneWB) baseBlock(ctx context.Context, bf *manifest.File, baseSize, b, l int64, put func(rec []byte, d delta) (blockstore.ID, error)) (blockstore.ID, error) {
	bs := int64(c.base.BlockSize)
	off := b * bs
	if bf == nil || off >= baseSize || b >= int64(len(bf.Blocks)) {
		return blockstore.Hole, nil
	}
	have := min(l, baseSize-off, bf.Size-off)
	baseLen := min(bs, bf.Size-off)
	id := bf.Blocks[b]
	if have == l && baseLen == l {
		return id, nil
	}
	if id.IsHole() {
		return blockstore.Hole, nil
	}
	p, err := c.w.cfg.Blocks.ReadBlock(ctx, id, nil)
	if err != nil {
		return blockstore.Hole, err
	}
	rec := make([]byte, outboxRecHdr+l)
	copy(rec[outboxRecHdr:], p[:have])
	return put(rec, delta{})
}

// deltaMaxShare is the share of a block's sectors above which a changed
// block goes whole: a delta of most of a block saves little and costs the
// server a rebuild.
const deltaMaxShare = 0.75

// delta returns how whole block b, e.Dirty[di], differs from a block the
// server holds: from its content at the last seal (prev, committed before
// this seal began) by the sectors written since, or, when that is not
// known, from the base file's block by its local sectors. None when the
// file was cut short since (sectors past the cut may have changed
// unmarked), when the base block is not whole under BaseSize, or when too
// many sectors changed. A wrong delta costs only a retry: the server
// checks the rebuilt block's hash, and the block then goes whole.
func (e *Entry) delta(di int, b, bs int64, prev []idOK, bf *manifest.File) delta {
	if e.SectorSize <= 0 || di >= len(e.DirtySectors) || di >= len(e.LocalSectors) {
		return delta{}
	}
	d := delta{sectorSize: int(e.SectorSize)}
	switch {
	case !e.Shrunk && b < int64(len(prev)) && prev[b].ok && prev[b].full:
		d.base, d.mask = prev[b].id, e.DirtySectors[di]
	case bf != nil && (b+1)*bs <= e.BaseSize && (b+1)*bs <= bf.Size && b < int64(len(bf.Blocks)):
		d.base, d.mask = bf.Blocks[b], e.LocalSectors[di]
	default:
		return delta{}
	}
	spb := bs / e.SectorSize
	if d.base.IsHole() || d.mask == 0 || spb > 64 || spb < 64 && d.mask>>spb != 0 ||
		float64(bits.OnesCount64(d.mask)) > deltaMaxShare*float64(spb) {
		return delta{}
	}
	return d
}

// sameTree reports whether two manifests describe the same tree.
func sameTree(a, b *manifest.Manifest) bool {
	if a == nil || b == nil || len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		x, y := &a.Files[i], &b.Files[i]
		if x.Path != y.Path || x.Mode != y.Mode || x.Size != y.Size || x.Target != y.Target ||
			!x.MTime.Equal(y.MTime) || len(x.Blocks) != len(y.Blocks) {
			return false
		}
		for j := range x.Blocks {
			if x.Blocks[j] != y.Blocks[j] {
				return false
			}
		}
	}
	return true
}
