// Package fstest holds in-memory implementations of fs.BlockReader and
// fs.Catalog over a memstore, and deterministic template trees, for the
// tests of fs and its adapters. Nothing outside tests imports it.
package fstest

import (
	"context"
	"fmt"
	iofs "io/fs"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
)

// BlockSize is the block size of the trees built here.
const BlockSize = blockstore.DefaultBlockSize

// Blocks is an fs.BlockReader over a memstore that counts what it is
// asked.
type Blocks struct {
	Store *memstore.Store

	reads      atomic.Int64
	prefetched atomic.Int64
}

var _ fs.BlockReader = (*Blocks)(nil)

// ReadBlock implements fs.BlockReader.
func (b *Blocks) ReadBlock(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if id.IsHole() {
		panic("fstest: ReadBlock of a hole")
	}
	b.reads.Add(1)
	return b.Store.Get(ctx, id, dst)
}

var _ fs.RunReader = (*Blocks)(nil)

// ReadBlocks implements fs.RunReader, one Get a block (memstore has no
// disk to read runs from); each block counts as a read.
func (b *Blocks) ReadBlocks(ctx context.Context, ids []blockstore.ID, size int, dst []byte) error {
	for i, id := range ids {
		chunk := dst[i*size : i*size : (i+1)*size]
		got, err := b.ReadBlock(ctx, id, chunk)
		if err != nil {
			return err
		}
		if len(got) != size {
			return fmt.Errorf("block %s: %w: %d bytes, want %d", id.Short(), blockstore.ErrCorrupt, len(got), size)
		}
	}
	return nil
}

// Prefetch implements fs.BlockReader; it only counts.
func (b *Blocks) Prefetch(ids []blockstore.ID) { b.prefetched.Add(int64(len(ids))) }

// Reads returns how many blocks were read.
func (b *Blocks) Reads() int64 { return b.reads.Load() }

// Prefetched returns how many block IDs were passed to Prefetch.
func (b *Blocks) Prefetched() int64 { return b.prefetched.Load() }

// Catalog is an in-memory fs.Catalog.
type Catalog struct {
	mu        sync.Mutex
	templates map[string][]*manifest.Manifest
	clones    map[string]*manifest.Manifest
}

var _ fs.Catalog = (*Catalog)(nil)

// Templates implements fs.Catalog.
func (c *Catalog) Templates(ctx context.Context) ([]fs.TemplateInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []fs.TemplateInfo
	for name, ms := range c.templates {
		t := fs.TemplateInfo{Name: name}
		for _, m := range ms {
			t.Versions = append(t.Versions, m.Version)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b fs.TemplateInfo) int { return cmpString(a.Name, b.Name) })
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Template implements fs.Catalog.
func (c *Catalog) Template(ctx context.Context, name string, version uint64) (*manifest.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := c.templates[name]
	if len(ms) == 0 {
		return nil, fmt.Errorf("template %q: %w", name, iofs.ErrNotExist)
	}
	if version == 0 {
		return ms[len(ms)-1], nil
	}
	for _, m := range ms {
		if m.Version == version {
			return m, nil
		}
	}
	return nil, fmt.Errorf("template %s@%d: %w", name, version, blockstore.ErrNotFound)
}

// Clones implements fs.Catalog.
func (c *Catalog) Clones(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name := range c.clones {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

// Clone implements fs.Catalog.
func (c *Catalog) Clone(ctx context.Context, name string) (*manifest.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.clones[name]
	if m == nil {
		return nil, fmt.Errorf("clone %q: %w", name, iofs.ErrNotExist)
	}
	return m, nil
}

// World is a block store and a catalog to fill with trees.
type World struct {
	Blocks  *Blocks
	Catalog *Catalog
}

// NewWorld returns an empty world.
func NewWorld() *World {
	return &World{
		Blocks:  &Blocks{Store: memstore.New()},
		Catalog: &Catalog{templates: make(map[string][]*manifest.Manifest), clones: make(map[string]*manifest.Manifest)},
	}
}

// Entry is one entry of a tree to build.
type Entry struct {
	// Path is slash-separated, relative; parents must be listed.
	Path string
	// Mode holds the type and permission bits.
	Mode iofs.FileMode
	// Size is a regular file's length.
	Size int64
	// Content fills block i of a regular file and reports whether it holds
	// data; false means a hole (p is left as zeros). nil: all holes.
	Content func(i int64, p []byte) bool
	// Target is a symlink's target.
	Target string
	// Link makes the entry another name of the entry at path Link, which
	// sorts before it; its other fields are ignored.
	Link string
	// Rdev is a device node's number.
	Rdev uint64
	// UID and GID own the entry; a tree with an owner other than root
	// keeps owners in its manifest.
	UID, GID uint32
	// ATime is the access time (zero: not kept, it reads as the mtime).
	ATime time.Time
}

// EntryMTime is the mtime Build gives the entry at path.
func EntryMTime(path string) time.Time { return time.Unix(1700000000, int64(len(path))) }

// ReadAt fills p with the entry's bytes from off, zeros past the end, as
// the tree built from it must read.
func (e Entry) ReadAt(p []byte, off int64) {
	clear(p)
	block := make([]byte, BlockSize)
	for len(p) > 0 {
		bi := off / BlockSize
		in := off % BlockSize
		n := min(int64(len(p)), BlockSize-in)
		if off < e.Size && e.Content != nil {
			clear(block)
			if e.Content(bi, block) {
				end := min(e.Size-bi*BlockSize, BlockSize)
				if in < end {
					copy(p[:n], block[in:end])
				}
			}
		}
		p = p[n:]
		off += n
	}
}

// Bytes returns the whole content of a regular entry.
func (e Entry) Bytes() []byte {
	p := make([]byte, e.Size)
	e.ReadAt(p, 0)
	return p
}

// Pattern returns a Content of pseudo-random bytes from seed, where every
// holeEvery-th block (0: none) is a hole.
func Pattern(seed uint64, holeEvery int64) func(int64, []byte) bool {
	return func(i int64, p []byte) bool {
		if holeEvery > 0 && i%holeEvery == holeEvery-1 {
			return false
		}
		Fill(p, seed, uint64(i))
		return true
	}
}

// Fill fills p with pseudo-random bytes from (seed, stream).
func Fill(p []byte, seed, stream uint64) {
	r := rand.New(rand.NewPCG(seed, stream))
	for i := 0; i < len(p); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
}

// Sparse returns a Content with data only in the listed blocks.
func Sparse(seed uint64, blocks ...int64) func(int64, []byte) bool {
	return func(i int64, p []byte) bool {
		if !slices.Contains(blocks, i) {
			return false
		}
		Fill(p, seed, uint64(i))
		return true
	}
}

// Build stores the blocks of entries and returns their manifest.
func (w *World) Build(ctx context.Context, kind manifest.Kind, name string, version uint64, entries []Entry) (*manifest.Manifest, error) {
	m := &manifest.Manifest{Kind: kind, Name: name, Version: version, Created: time.Unix(1700000000, 0), BlockSize: BlockSize}
	if version > 1 {
		m.Parent = version - 1
	}
	block := make([]byte, BlockSize)
	for _, e := range entries {
		if e.UID != 0 || e.GID != 0 {
			m.Owners = true
		}
	}
	for _, e := range entries {
		if e.Link != "" {
			continue // after the entries they name
		}
		f := manifest.File{Path: e.Path, Mode: e.Mode, MTime: EntryMTime(e.Path), ATime: e.ATime, Target: e.Target, Rdev: e.Rdev}
		if m.Owners {
			f.UID, f.GID = e.UID, e.GID
		}
		if e.Mode.Type() == 0 {
			f.Size = e.Size
			for i := int64(0); i*BlockSize < e.Size; i++ {
				n := min(e.Size-i*BlockSize, BlockSize)
				clear(block)
				if e.Content == nil || !e.Content(i, block) || blockstore.IsZero(block[:n]) {
					f.Blocks = append(f.Blocks, blockstore.Hole)
					continue
				}
				id := blockstore.Sum(block[:n])
				if err := w.Blocks.Store.Put(ctx, blockstore.Block{ID: id, Frame: blockstore.Encode(nil, block[:n])}); err != nil {
					return nil, err
				}
				f.Blocks = append(f.Blocks, id)
			}
		}
		m.Files = append(m.Files, f)
	}
	slices.SortFunc(m.Files, func(a, b manifest.File) int { return cmpString(a.Path, b.Path) })
	for _, e := range entries {
		if e.Link == "" {
			continue
		}
		p, ok := m.Lookup(e.Link)
		if !ok {
			return nil, fmt.Errorf("fstest: %s links to missing %s", e.Path, e.Link)
		}
		f := *p
		f.Path, f.Link = e.Path, e.Link
		m.Files = append(m.Files, f)
	}
	slices.SortFunc(m.Files, func(a, b manifest.File) int { return cmpString(a.Path, b.Path) })
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// AddTemplate builds the next version of template name.
func (w *World) AddTemplate(ctx context.Context, name string, entries []Entry) (*manifest.Manifest, error) {
	w.Catalog.mu.Lock()
	version := uint64(len(w.Catalog.templates[name]) + 1)
	w.Catalog.mu.Unlock()
	m, err := w.Build(ctx, manifest.KindTemplate, name, version, entries)
	if err != nil {
		return nil, err
	}
	w.Catalog.mu.Lock()
	w.Catalog.templates[name] = append(w.Catalog.templates[name], m)
	w.Catalog.mu.Unlock()
	return m, nil
}

// AddClone builds generation 1 of clone name.
func (w *World) AddClone(ctx context.Context, name string, entries []Entry) (*manifest.Manifest, error) {
	m, err := w.Build(ctx, manifest.KindClone, name, 1, entries)
	if err != nil {
		return nil, err
	}
	w.Catalog.mu.Lock()
	w.Catalog.clones[name] = m
	w.Catalog.mu.Unlock()
	return m, nil
}

// SetClone makes m the manifest Clone returns for m.Name.
func (c *Catalog) SetClone(m *manifest.Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clones[m.Name] = m
}
