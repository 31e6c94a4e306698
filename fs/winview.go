package fs

// The Windows view of the tree (Config.MapNames, Config.CaseInsensitive):
// directories that show their entries under Windows names and take names
// in that form, over the same nodes. Every directory keeps a name index
// (names.go) where its entries change, so a lookup stays one map access;
// the directories here only translate names, as an adapter translates
// calls.

import (
	"context"
	"fmt"
	iofs "io/fs"
	"slices"
	"strings"
)

// indexedDir is a directory with a Windows name index.
type indexedDir interface {
	Dir
	// index returns the directory's index, held still until done is
	// called.
	index(ctx context.Context) (x *nameIndex, done func(), err error)
}

var (
	_ indexedDir = (*rootDir)(nil)
	_ indexedDir = (*templatesDir)(nil)
	_ indexedDir = (*clonesDir)(nil)
	_ indexedDir = (*tmplDir)(nil)
	_ indexedDir = (*cloneDir)(nil)

	_ MutableDir = (*winCloneDir)(nil)
	_ Setter     = (*winCloneDir)(nil)
	_ Syncer     = (*winCloneDir)(nil)
)

// windowsView says whether directories show Windows names.
func (fsys *FS) windowsView() bool { return fsys.cfg.MapNames || fsys.cfg.CaseInsensitive }

// MapsNames says whether names Win32 cannot open show mapped
// (Config.MapNames): an adapter whose host maps some of them itself
// undoes that first.
func (fsys *FS) MapsNames() bool { return fsys.cfg.MapNames }

// CaseInsensitive says whether names are found whatever their case
// (Config.CaseInsensitive): an adapter tells its host so.
func (fsys *FS) CaseInsensitive() bool { return fsys.cfg.CaseInsensitive }

// newNameIndex returns an empty name index for a directory, or nil when
// names show as they are stored.
func (fsys *FS) newNameIndex() *nameIndex {
	if !fsys.windowsView() {
		return nil
	}
	return newNameIndex(fsys.cfg.MapNames, fsys.cfg.CaseInsensitive)
}

// winNode returns n as the Windows view shows it.
func winNode(n Node) Node {
	switch d := n.(type) {
	case *cloneDir:
		return &winCloneDir{d}
	case indexedDir:
		return &winDir{d}
	}
	return n
}

// winDir is a read-only directory in the Windows view.
type winDir struct{ d indexedDir }

func (w *winDir) Attr(ctx context.Context) (Attr, error) { return w.d.Attr(ctx) }

func (w *winDir) Lookup(ctx context.Context, name string) (Node, error) {
	return lookupStored(ctx, w.d, name)
}

func (w *winDir) ReadDir(ctx context.Context) ([]DirEntry, error) { return readDirShown(ctx, w.d) }

// winCloneDir is a clone's directory in the Windows view.
type winCloneDir struct{ *cloneDir }

func (w *winCloneDir) Lookup(ctx context.Context, name string) (Node, error) {
	return lookupStored(ctx, w.cloneDir, name)
}

func (w *winCloneDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	return readDirShown(ctx, w.cloneDir)
}

func (w *winCloneDir) Create(ctx context.Context, name string, mode iofs.FileMode, flags int) (Node, Handle, error) {
	s, err := newEntry(ctx, w.cloneDir, name)
	if err != nil {
		return nil, nil, err
	}
	n, h, err := w.cloneDir.Create(ctx, s, mode, flags)
	return winNode(n), h, err
}

func (w *winCloneDir) Mkdir(ctx context.Context, name string, mode iofs.FileMode) (Node, error) {
	s, err := newEntry(ctx, w.cloneDir, name)
	if err != nil {
		return nil, err
	}
	n, err := w.cloneDir.Mkdir(ctx, s, mode)
	return winNode(n), err
}

func (w *winCloneDir) Symlink(ctx context.Context, target, name string) (Node, error) {
	s, err := newEntry(ctx, w.cloneDir, name)
	if err != nil {
		return nil, err
	}
	return w.cloneDir.Symlink(ctx, target, s)
}

func (w *winCloneDir) Mknod(ctx context.Context, name string, mode iofs.FileMode, rdev uint64) (Node, error) {
	s, err := newEntry(ctx, w.cloneDir, name)
	if err != nil {
		return nil, err
	}
	return w.cloneDir.Mknod(ctx, s, mode, rdev)
}

func (w *winCloneDir) Link(ctx context.Context, target Node, name string) (Node, error) {
	if t, ok := target.(*winCloneDir); ok {
		target = t.cloneDir // refused as a directory, not as another tree's
	}
	s, err := newEntry(ctx, w.cloneDir, name)
	if err != nil {
		return nil, err
	}
	return w.cloneDir.Link(ctx, target, s)
}

func (w *winCloneDir) Unlink(ctx context.Context, name string) error {
	s, err := existing(ctx, w.cloneDir, name)
	if err != nil {
		return err
	}
	return w.cloneDir.Unlink(ctx, s)
}

func (w *winCloneDir) Rmdir(ctx context.Context, name string) error {
	s, err := existing(ctx, w.cloneDir, name)
	if err != nil {
		return err
	}
	return w.cloneDir.Rmdir(ctx, s)
}

// Rename moves the entry shown as name to the one shown as newName: that
// entry when there is one (replaced, as rename(2) does), unless it is the
// entry moved, which then only changes its case.
func (w *winCloneDir) Rename(ctx context.Context, name string, newDir MutableDir, newName string, flags RenameFlags) error {
	nd, ok := newDir.(*winCloneDir)
	if !ok {
		return ErrCrossDevice
	}
	s, err := existing(ctx, w.cloneDir, name)
	if err != nil {
		return err
	}
	t, found, err := find(ctx, nd.cloneDir, newName)
	if err != nil {
		return err
	}
	if !found || nd.n == w.n && t == s {
		if t, err = madeAs(nd.cloneDir, newName); err != nil {
			return err
		}
	}
	return w.cloneDir.Rename(ctx, s, nd.cloneDir, t, flags)
}

// find returns the stored name of the entry of d shown as name.
func find(ctx context.Context, d indexedDir, name string) (string, bool, error) {
	if winNameLen(name) > MaxNameLen {
		return "", false, fmt.Errorf("name of %d UTF-16 units: %w", winNameLen(name), ErrNameTooLong)
	}
	x, done, err := d.index(ctx)
	if err != nil {
		return "", false, err
	}
	defer done()
	s, ok := x.find(name)
	return s, ok, nil
}

// existing returns the stored name of the entry of d shown as name.
func existing(ctx context.Context, d indexedDir, name string) (string, error) {
	s, ok, err := find(ctx, d, name)
	switch {
	case err != nil:
		return "", err
	case !ok:
		return "", fmt.Errorf("%q: %w", name, ErrNotExist)
	}
	return s, nil
}

// newEntry returns the stored name of what d is asked to make as name:
// the entry shown as name when there is one (so that an exclusive create
// fails, and another opens it), else what name stands for.
func newEntry(ctx context.Context, d *cloneDir, name string) (string, error) {
	s, ok, err := find(ctx, d, name)
	if err != nil || ok {
		return s, err
	}
	return madeAs(d, name)
}

// madeAs returns what a new entry of d called name is stored as.
func madeAs(d *cloneDir, name string) (string, error) {
	s, canonical := d.n.names.newName(name)
	if !canonical {
		return s, fmt.Errorf("%+q is not how any name shows here: %w", name, ErrInvalid)
	}
	return s, nil
}

// lookupStored returns the entry of d shown as name, in the Windows
// view.
func lookupStored(ctx context.Context, d indexedDir, name string) (Node, error) {
	s, err := existing(ctx, d, name)
	if err != nil {
		return nil, err
	}
	n, err := d.Lookup(ctx, s)
	if err != nil {
		return nil, err
	}
	return winNode(n), nil
}

// readDirShown lists d under the names its entries show as, sorted by
// them.
func readDirShown(ctx context.Context, d indexedDir) ([]DirEntry, error) {
	ents, err := d.ReadDir(ctx)
	if err != nil {
		return nil, err
	}
	x, done, err := d.index(ctx)
	if err != nil {
		return nil, err
	}
	out := ents[:0]
	for _, e := range ents {
		if w, ok := x.show(e.Name); ok { // not: gone since ReadDir
			e.Name = w
			out = append(out, e)
		}
	}
	done()
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ShownPath returns the path p (slash-separated, from the root) with
// each name as it shows: how a case-insensitive host learns the case of
// what it opened (WinFsp's getpath).
func (fsys *FS) ShownPath(ctx context.Context, p string) (string, error) {
	if !fsys.windowsView() {
		return p, nil
	}
	var n Node = fsys.root
	var b strings.Builder
	for name := range strings.SplitSeq(p, "/") {
		if name == "" {
			continue
		}
		d, ok := n.(indexedDir)
		if !ok {
			return "", fmt.Errorf("%q in %q: %w", name, p, ErrNotDir)
		}
		x, done, err := d.index(ctx)
		if err != nil {
			return "", err
		}
		s, ok := x.find(name)
		w, _ := x.show(s)
		done()
		if !ok {
			return "", fmt.Errorf("%q in %q: %w", name, p, ErrNotExist)
		}
		if n, err = d.Lookup(ctx, s); err != nil {
			return "", err
		}
		b.WriteString("/" + w)
	}
	if b.Len() == 0 {
		return "/", nil
	}
	return b.String(), nil
}
