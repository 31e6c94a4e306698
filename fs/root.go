package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// rootDir is the top of the tree: templates/ and clones/.
type rootDir struct{ fsys *FS }

func (d *rootDir) Attr(ctx context.Context) (Attr, error) {
	return fixedDirAttr(d.fsys, inoRoot, 4), nil
}

func (d *rootDir) Lookup(ctx context.Context, name string) (Node, error) {
	if err := lookupName(name); err != nil {
		return nil, err
	}
	switch name {
	case "templates":
		return d.fsys.templates, nil
	case "clones":
		return d.fsys.clones, nil
	}
	return nil, fmt.Errorf("%q: %w", name, ErrNotExist)
}

func (d *rootDir) index(ctx context.Context) (*nameIndex, func(), error) {
	return d.fsys.rootNames, func() {}, nil
}

func (d *rootDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	return []DirEntry{
		{Name: "clones", Mode: iofs.ModeDir, Ino: inoClones},
		{Name: "templates", Mode: iofs.ModeDir, Ino: inoTemplates},
	}, nil
}

func fixedDirAttr(fsys *FS, ino uint64, nlink uint32) Attr {
	o := fsys.cfg.Owner
	return Attr{Ino: ino, Mode: iofs.ModeDir | 0o555, Nlink: nlink, UID: o.UID, GID: o.GID,
		MTime: fsys.started, ATime: fsys.started, CTime: fsys.started}
}

// listCache keeps a Catalog list for CatalogTTL, and the Windows name
// index of the list it keeps.
type listCache[T any] struct {
	mu    sync.Mutex
	list  T
	at    time.Time
	ok    bool
	idx   *nameIndex // of list, made at idxAt; replaced, never changed
	idxAt time.Time
}

// index returns the name index of the list kept now, whose entries'
// names are names(list).
func (c *listCache[T]) index(fsys *FS, names func(T) []string) *nameIndex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idx == nil || !c.idxAt.Equal(c.at) {
		c.idx, c.idxAt = fsys.newNameIndex(), c.at
		for _, n := range names(c.list) {
			c.idx.add(n)
		}
	}
	return c.idx
}

func (c *listCache[T]) get(ttl time.Duration, fetch func() (T, error)) (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && time.Since(c.at) < ttl {
		return c.list, nil
	}
	l, err := fetch()
	if err != nil {
		var zero T
		return zero, err
	}
	c.list, c.at, c.ok = l, time.Now(), true
	return l, nil
}

// templatesDir is templates/: NAME (the latest version) and NAME@VERSION
// for every version.
type templatesDir struct {
	fsys *FS
	list listCache[[]TemplateInfo]
}

func (d *templatesDir) Attr(ctx context.Context) (Attr, error) {
	return fixedDirAttr(d.fsys, inoTemplates, 2), nil
}

func (d *templatesDir) infos(ctx context.Context) ([]TemplateInfo, error) {
	return d.list.get(d.fsys.cfg.CatalogTTL, func() ([]TemplateInfo, error) {
		l, err := d.fsys.cfg.Catalog.Templates(ctx)
		if err != nil {
			return nil, fmt.Errorf("list templates: %w", err)
		}
		return l, nil
	})
}

func (d *templatesDir) Lookup(ctx context.Context, name string) (Node, error) {
	if err := lookupName(name); err != nil {
		return nil, err
	}
	base, vs, pinned := strings.Cut(name, "@")
	var version uint64
	if pinned {
		v, err := strconv.ParseUint(vs, 10, 64)
		if err != nil || v == 0 || strconv.FormatUint(v, 10) != vs {
			return nil, fmt.Errorf("template %q: %w", name, ErrNotExist)
		}
		version = v
	}
	infos, err := d.infos(ctx)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(infos, func(t TemplateInfo) bool { return t.Name == base })
	if i < 0 || len(infos[i].Versions) == 0 {
		return nil, fmt.Errorf("template %q: %w", name, ErrNotExist)
	}
	if !pinned {
		version = slices.Max(infos[i].Versions)
	} else if !slices.Contains(infos[i].Versions, version) {
		return nil, fmt.Errorf("template %q: %w", name, ErrNotExist)
	}
	v, err := d.fsys.view(ctx, viewKey{name: name, template: base, version: version})
	if err != nil {
		return nil, err
	}
	return v.node(-1), nil
}

func (d *templatesDir) index(ctx context.Context) (*nameIndex, func(), error) {
	if _, err := d.infos(ctx); err != nil {
		return nil, nil, err
	}
	return d.list.index(d.fsys, func(infos []TemplateInfo) []string {
		var names []string
		for _, e := range templateEntries(infos) {
			names = append(names, e.Name)
		}
		return names
	}), func() {}, nil
}

func (d *templatesDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	infos, err := d.infos(ctx)
	if err != nil {
		return nil, err
	}
	return templateEntries(infos), nil
}

// templateEntries lists templates/: each template's name and its
// NAME@VERSION names, sorted.
func templateEntries(infos []TemplateInfo) []DirEntry {
	var out []DirEntry
	for _, t := range infos {
		if len(t.Versions) == 0 {
			continue
		}
		out = append(out, DirEntry{Name: t.Name, Mode: iofs.ModeDir})
		for _, v := range t.Versions {
			out = append(out, DirEntry{Name: t.Name + "@" + strconv.FormatUint(v, 10), Mode: iofs.ModeDir})
		}
	}
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// clonesDir is clones/: one directory per clone the Catalog lists.
type clonesDir struct {
	fsys *FS
	list listCache[[]string]
}

func (d *clonesDir) Attr(ctx context.Context) (Attr, error) {
	a := fixedDirAttr(d.fsys, inoClones, 2)
	if !d.fsys.cfg.ShareClones {
		a.Mode = iofs.ModeDir | 0o500
	}
	return a, nil
}

func (d *clonesDir) names(ctx context.Context) ([]string, error) {
	return d.list.get(d.fsys.cfg.CatalogTTL, func() ([]string, error) {
		l, err := d.fsys.cfg.Catalog.Clones(ctx)
		if err != nil {
			return nil, fmt.Errorf("list clones: %w", err)
		}
		return l, nil
	})
}

func (d *clonesDir) Lookup(ctx context.Context, name string) (Node, error) {
	if err := lookupName(name); err != nil {
		return nil, err
	}
	d.fsys.mu.Lock()
	c := d.fsys.loaded[name]
	d.fsys.mu.Unlock()
	if c != nil {
		return c.node(c.root), nil
	}
	names, err := d.names(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(names, name) || !validCloneName(name) {
		return nil, fmt.Errorf("clone %q: %w", name, ErrNotExist)
	}
	c, err = d.fsys.clone(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.node(c.root), nil
}

func (d *clonesDir) index(ctx context.Context) (*nameIndex, func(), error) {
	if _, err := d.names(ctx); err != nil {
		return nil, nil, err
	}
	return d.list.index(d.fsys, func(names []string) []string {
		return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !validCloneName(n) })
	}), func() {}, nil
}

func (d *clonesDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	names, err := d.names(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]DirEntry, 0, len(names))
	for _, n := range names {
		if validCloneName(n) {
			out = append(out, DirEntry{Name: n, Mode: iofs.ModeDir})
		}
	}
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// validCloneName keeps a clone's name usable as a path element and in
// metadata keys.
func validCloneName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= MaxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}
