package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// viewKey names a template view: what it was looked up as ("winxp" or
// "winxp@3") and the version that resolved to. "winxp" and "winxp@3" are
// separate views, with their own inode numbers, so a directory never has
// two parents; they share the manifest's blocks through the BlockReader.
type viewKey struct {
	name     string
	template string
	version  uint64
}

// tmplView is one template version as a read-only tree.
type tmplView struct {
	fsys  *FS
	space uint64
	m     *manifest.Manifest
	bs    int64
	// children[i+1] lists the entries of directory i (index into m.Files;
	// -1 is the root) in name order.
	children map[int][]int
	// blocks[i] is the space file i takes, in 512-byte units.
	blocks []int64
	// primary maps a hard link's index to the index of the entry it is
	// another name of; links counts the names of such entries.
	primary map[int]int
	links   map[int]uint32

	namesMu sync.Mutex
	names   map[int]*nameIndex // per directory, built when first asked for
}

// view returns the view of key, fetching the manifest the first time.
func (fsys *FS) view(ctx context.Context, key viewKey) (*tmplView, error) {
	fsys.mu.Lock()
	v := fsys.views[key]
	fsys.mu.Unlock()
	if v != nil {
		return v, nil
	}
	m, err := fsys.cfg.Catalog.Template(ctx, key.template, key.version)
	if notExist(err) {
		return nil, fmt.Errorf("template %s@%d: %w", key.template, key.version, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("template %s@%d: %w", key.template, key.version, err)
	}
	if m.BlockSize == 0 {
		return nil, fmt.Errorf("template %s@%d: %w: block size 0", key.template, key.version, ErrCorrupt)
	}
	v = &tmplView{fsys: fsys, m: m, bs: int64(m.BlockSize), children: make(map[int][]int), blocks: make([]int64, len(m.Files))}
	for i := range m.Files {
		f := &m.Files[i]
		parent := -1
		if dir, _, ok := cutLast(f.Path); ok {
			p, found := fileIndex(m, dir)
			if !found {
				return nil, fmt.Errorf("template %s@%d: %w: %q has no parent", key.template, key.version, ErrCorrupt, f.Path)
			}
			parent = p
		}
		v.children[parent] = append(v.children[parent], i)
		if f.Link != "" {
			p, found := fileIndex(m, f.Link)
			if !found {
				return nil, fmt.Errorf("template %s@%d: %w: %q links to missing %q", key.template, key.version, ErrCorrupt, f.Path, f.Link)
			}
			if v.primary == nil {
				v.primary, v.links = make(map[int]int), make(map[int]uint32)
			}
			v.primary[i] = p
			v.links[p] = max(v.links[p], 1) + 1
		}
		for bi, id := range f.Blocks {
			if !id.IsHole() {
				_, n := f.BlockRange(m.BlockSize, bi)
				v.blocks[i] += int64(n+511) / 512
			}
		}
	}
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if old := fsys.views[key]; old != nil {
		return old, nil
	}
	v.space = fsys.newSpace()
	fsys.views[key] = v
	return v, nil
}

// fileIndex returns the index in m.Files of the entry at path p.
func fileIndex(m *manifest.Manifest, p string) (int, bool) {
	i, ok := slices.BinarySearchFunc(m.Files, p, func(f manifest.File, p string) int { return strings.Compare(f.Path, p) })
	return i, ok
}

// cutLast splits p at its last slash.
func cutLast(p string) (dir, name string, ok bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p, false
	}
	return p[:i], p[i+1:], true
}

// node returns the node of entry i (-1: the root).
func (v *tmplView) node(i int) Node {
	e := tmplEntry{v: v, i: i}
	if i < 0 {
		return &tmplDir{e}
	}
	switch m := v.m.Files[i].Mode; {
	case m.IsDir():
		return &tmplDir{e}
	case m.Type() == iofs.ModeSymlink:
		return &tmplLink{e}
	case m.IsRegular():
		return &tmplFile{e}
	default:
		return &tmplSpecial{e}
	}
}

// ino is the inode number of entry i: a hard link has its primary's.
func (v *tmplView) ino(i int) uint64 {
	if p, ok := v.primary[i]; ok {
		i = p
	}
	return makeIno(v.space, uint64(i)+2)
}

// owner is the local owner of entry f.
func (v *tmplView) owner(f *manifest.File) Owner {
	if !v.m.Owners {
		return v.fsys.cfg.Owner
	}
	return v.fsys.ids.local(Owner{f.UID, f.GID})
}

// tmplEntry is what every template node has.
type tmplEntry struct {
	v *tmplView
	i int // index in v.m.Files; -1 for the root
}

func (e tmplEntry) file() *manifest.File { return &e.v.m.Files[e.i] }

func (e tmplEntry) Attr(ctx context.Context) (Attr, error) {
	if e.i < 0 {
		return Attr{
			Ino: makeIno(e.v.space, 1), Mode: iofs.ModeDir | 0o555, Nlink: e.v.nlink(-1),
			MTime: e.v.m.Created, ATime: e.v.m.Created, CTime: e.v.m.Created, Immutable: true,
			UID: e.v.fsys.cfg.Owner.UID, GID: e.v.fsys.cfg.Owner.GID,
		}, nil
	}
	f := e.file()
	o := e.v.owner(f)
	a := Attr{
		Ino:       e.v.ino(e.i),
		Mode:      f.Mode &^ 0o222, // read-only, and says so
		Size:      f.Size,
		Blocks:    e.v.blocks[e.i],
		Nlink:     1,
		MTime:     f.MTime,
		ATime:     f.ATime,
		CTime:     f.MTime,
		UID:       o.UID,
		GID:       o.GID,
		Rdev:      f.Rdev,
		Immutable: true,
	}
	if a.ATime.IsZero() {
		a.ATime = f.MTime
	}
	switch f.Mode.Type() {
	case iofs.ModeDir:
		a.Nlink = e.v.nlink(e.i)
	case iofs.ModeSymlink:
		a.Size = int64(len(f.Target))
	}
	p := e.i
	if q, ok := e.v.primary[p]; ok {
		p = q
	}
	if n := e.v.links[p]; n > 0 {
		a.Nlink = n
	}
	return a, nil
}

func (v *tmplView) nlink(dir int) uint32 {
	n := uint32(2)
	for _, c := range v.children[dir] {
		if v.m.Files[c].Mode.IsDir() {
			n++
		}
	}
	return n
}

// tmplDir is a directory of a template.
type tmplDir struct{ tmplEntry }

func (d *tmplDir) Lookup(ctx context.Context, name string) (Node, error) {
	if err := lookupName(name); err != nil {
		return nil, err
	}
	p := name
	if d.i >= 0 {
		p = path.Join(d.file().Path, name)
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, fmt.Errorf("%q: %w", name, ErrNotExist)
	}
	i, ok := fileIndex(d.v.m, p)
	if !ok {
		return nil, fmt.Errorf("%q: %w", p, ErrNotExist)
	}
	return d.v.node(i), nil
}

func (d *tmplDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	kids := d.v.children[d.i]
	out := make([]DirEntry, 0, len(kids))
	for _, c := range kids {
		f := &d.v.m.Files[c]
		_, name, _ := cutLast(f.Path)
		out = append(out, DirEntry{Name: name, Mode: f.Mode.Type(), Ino: d.v.ino(c)})
	}
	return out, nil
}

// index returns the Windows name index of directory i (built once: a
// template never changes).
func (v *tmplView) index(i int) *nameIndex {
	v.namesMu.Lock()
	defer v.namesMu.Unlock()
	if x := v.names[i]; x != nil {
		return x
	}
	x := v.fsys.newNameIndex()
	for _, c := range v.children[i] {
		_, name, _ := cutLast(v.m.Files[c].Path)
		x.add(name)
	}
	if v.names == nil {
		v.names = make(map[int]*nameIndex)
	}
	v.names[i] = x
	return x
}

func (d *tmplDir) index(ctx context.Context) (*nameIndex, func(), error) {
	return d.v.index(d.i), func() {}, nil
}

// tmplLink is a symlink of a template.
type tmplLink struct{ tmplEntry }

func (l *tmplLink) Readlink(ctx context.Context) (string, error) { return l.file().Target, nil }

// tmplSpecial is a FIFO, socket or device node of a template.
type tmplSpecial struct{ tmplEntry }

// tmplFile is a regular file of a template.
type tmplFile struct{ tmplEntry }

func (f *tmplFile) Open(ctx context.Context, flags int) (Handle, error) {
	if flags&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC|os.O_APPEND) != 0 {
		return nil, fmt.Errorf("open %s for writing: %w", f.file().Path, ErrReadOnly)
	}
	return &tmplHandle{v: f.v, f: f.file()}, nil
}

// tmplHandle is an open template file.
type tmplHandle struct {
	v  *tmplView
	f  *manifest.File
	ra readAhead
}

func (h *tmplHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	if off >= h.f.Size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), h.f.Size-off)]
	fsys := h.v.fsys
	fsys.readAheadBase(&h.ra, h.v.bs, h.f, off, int64(len(p)), h.f.Size, nil)
	if err := fsys.readBase(ctx, h.v.bs, h.f, p, off, h.f.Size); err != nil {
		return 0, fmt.Errorf("read %s: %w", h.f.Path, err)
	}
	return len(p), nil
}

func (h *tmplHandle) Release(ctx context.Context) error { return nil }
