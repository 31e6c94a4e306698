//go:build windows || (linux && cgo && fuse3)

package cgofuse

import (
	"context"
	"os"
	"path"
	"syscall"
	"time"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// The operations cgofuse calls, each a translation: walk the path in the
// core, call the core, map the error. ctx is context.Background():
// cgofuse passes on no interrupts, so every call runs to its end, as
// fs/gofuse's metadata changes do.

func (f *fsys) Init() { f.once.Do(func() { close(f.ready) }) }

// path is the core's path for a path the host passes: WinFsp's own
// mapping of forbidden characters undone (fromWinFsp) where the core maps
// names itself.
func (f *fsys) path(p string) string {
	if f.fromWinFsp {
		return fromWinFsp(p)
	}
	return p
}

// walk returns the node at the host's path p.
func (f *fsys) walk(p string) (fs.Node, error) {
	return f.core.Walk(context.Background(), f.path(p))
}

// walkParent returns the directory holding the last name of the host's
// path p, and that name.
func (f *fsys) walkParent(p string) (fs.Dir, string, error) {
	return f.core.WalkParent(context.Background(), f.path(p))
}

// node returns the core node of fh if it is an open file (its node
// stays right when the path has changed), else the node at p.
func (f *fsys) node(p string, fh uint64) (fs.Node, error) {
	if h := f.handle(fh); h != nil {
		return h.node, nil
	}
	return f.walk(p)
}

// Getpath tells a case-insensitive host (WinFsp) the path p names as the
// mount shows it: the case of each name as stored, and names mapped.
func (f *fsys) Getpath(p string, fh uint64) (int, string) {
	shown, err := f.core.ShownPath(context.Background(), f.path(p))
	if err != nil {
		return f.errc("getpath", err), ""
	}
	return 0, shown
}

func (f *fsys) Getattr(p string, st *fuse.Stat_t, fh uint64) int {
	n, err := f.node(p, fh)
	if err != nil {
		return f.errc("getattr", err)
	}
	a, err := n.Attr(context.Background())
	if err != nil {
		return f.errc("getattr", err)
	}
	fillStat(st, a)
	return 0
}

// fillStat turns the core's attributes into stat's. The core keeps no
// birth time; WinFsp shows st_birthtim as the creation time, so it is
// the modification time, as rclone's cmount gives it (zero would show
// as 1970).
func fillStat(st *fuse.Stat_t, a fs.Attr) {
	*st = fuse.Stat_t{
		Ino:      a.Ino,
		Mode:     fs.UnixMode(a.Mode),
		Nlink:    a.Nlink,
		Uid:      a.UID,
		Gid:      a.GID,
		Rdev:     a.Rdev,
		Size:     a.Size,
		Atim:     fuse.NewTimespec(a.ATime),
		Mtim:     fuse.NewTimespec(a.MTime),
		Ctim:     fuse.NewTimespec(a.CTime),
		Birthtim: fuse.NewTimespec(a.MTime),
		Blksize:  fs.IOBlockSize,
		Blocks:   a.Blocks,
	}
}

func (f *fsys) Access(p string, mask uint32) int {
	n, err := f.walk(p)
	if err != nil {
		return f.errc("access", err)
	}
	a, err := n.Attr(context.Background())
	if err != nil {
		return f.errc("access", err)
	}
	uid, gid, _ := fuse.Getcontext()
	if !fs.Permits(a, fs.Owner{UID: uid, GID: gid}, mask) {
		return errcOf(syscall.EACCES)
	}
	return 0
}

func (f *fsys) Readlink(p string) (int, string) {
	n, err := f.walk(p)
	if err != nil {
		return f.errc("readlink", err), ""
	}
	l, ok := n.(fs.Symlink)
	if !ok {
		return errcOf(syscall.EINVAL), ""
	}
	t, err := l.Readlink(context.Background())
	if err != nil {
		return f.errc("readlink", err), ""
	}
	return 0, t
}

func (f *fsys) Opendir(p string) (int, uint64) {
	n, err := f.walk(p)
	if err != nil {
		return f.errc("opendir", err), 0
	}
	if _, ok := n.(fs.Dir); !ok {
		return errcOf(syscall.ENOTDIR), 0
	}
	return 0, 0
}

func (f *fsys) Releasedir(p string, fh uint64) int { return 0 }

// Readdir lists the whole directory at once (offset 0 for every entry:
// libfuse keeps the listing for the kernel's later reads), with "." and
// "..".
func (f *fsys) Readdir(p string, fill func(string, *fuse.Stat_t, int64) bool, ofst int64, fh uint64) int {
	ctx := context.Background()
	n, err := f.walk(p)
	if err != nil {
		return f.errc("readdir", err)
	}
	d, ok := n.(fs.Dir)
	if !ok {
		return errcOf(syscall.ENOTDIR)
	}
	ents, err := d.ReadDir(ctx)
	if err != nil {
		return f.errc("readdir", err)
	}
	self, err := d.Attr(ctx)
	if err != nil {
		return f.errc("readdir", err)
	}
	up := self
	if dir := path.Dir(p); dir != p {
		if pn, err := f.walk(dir); err == nil {
			up, _ = pn.Attr(ctx)
		}
	}
	for _, e := range fs.WithDots(ents, self.Ino, up.Ino) {
		if !fill(e.Name, &fuse.Stat_t{Ino: e.Ino, Mode: fs.UnixType(e.Mode)}, 0) {
			break
		}
	}
	return 0
}

func (f *fsys) Statfs(p string, st *fuse.Statfs_t) int {
	s, err := f.core.Statfs(context.Background())
	if err != nil {
		return f.errc("statfs", err)
	}
	*st = fuse.Statfs_t{
		Bsize: uint64(s.BlockSize), Frsize: uint64(s.BlockSize),
		Blocks: s.Blocks, Bfree: s.Free, Bavail: s.Avail,
		Files: s.Files, Ffree: s.FilesFree, Favail: s.FilesFree,
		Namemax: uint64(s.NameLen),
	}
	return 0
}

// setattr applies one change of attributes to the node at p (or of fh).
func (f *fsys) setattr(op, p string, fh uint64, sa fs.SetAttr) int {
	n, err := f.node(p, fh)
	if err != nil {
		return f.errc(op, err)
	}
	s, ok := n.(fs.Setter)
	if !ok {
		return errcOf(syscall.EROFS)
	}
	_, err = s.SetAttr(context.Background(), sa)
	return f.errc(op, err)
}

func (f *fsys) Chmod(p string, mode uint32) int { return f.Chmod3(p, mode, ^uint64(0)) }

func (f *fsys) Chmod3(p string, mode uint32, fh uint64) int {
	m := fs.PermFromUnix(mode)
	return f.setattr("chmod", p, fh, fs.SetAttr{Mode: &m})
}

func (f *fsys) Chown(p string, uid, gid uint32) int { return f.Chown3(p, uid, gid, ^uint64(0)) }

// Chown3 changes the owner; an ID of -1 stays as it is.
func (f *fsys) Chown3(p string, uid, gid uint32, fh uint64) int {
	var sa fs.SetAttr
	if uid != ^uint32(0) {
		sa.UID = &uid
	}
	if gid != ^uint32(0) {
		sa.GID = &gid
	}
	return f.setattr("chown", p, fh, sa)
}

func (f *fsys) Utimens(p string, tmsp []fuse.Timespec) int { return f.Utimens3(p, tmsp, ^uint64(0)) }

// Utimens3 sets the access and modification times; UTIME_OMIT leaves
// one as it is, UTIME_NOW is now.
func (f *fsys) Utimens3(p string, tmsp []fuse.Timespec, fh uint64) int {
	var sa fs.SetAttr
	if len(tmsp) == 2 {
		sa.ATime, sa.MTime = utime(tmsp[0]), utime(tmsp[1])
	}
	return f.setattr("utimens", p, fh, sa)
}

func utime(ts fuse.Timespec) *time.Time {
	switch ts.Nsec {
	case fuse.UTIME_OMIT:
		return nil
	case fuse.UTIME_NOW:
		t := time.Now()
		return &t
	}
	t := ts.Time()
	return &t
}

func (f *fsys) Truncate(p string, size int64, fh uint64) int {
	return f.setattr("truncate", p, fh, fs.SetAttr{Size: &size})
}

// mutable walks to the parent directory of p, which must take changes.
func (f *fsys) mutable(p string) (fs.MutableDir, string, error) {
	d, name, err := f.walkParent(p)
	if err != nil {
		return nil, "", err
	}
	m, err := fs.Mutable(d)
	return m, name, err
}

func (f *fsys) Mkdir(p string, mode uint32) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("mkdir", err)
	}
	_, err = d.Mkdir(caller(), name, fs.PermFromUnix(mode))
	return f.errc("mkdir", err)
}

func (f *fsys) Mknod(p string, mode uint32, dev uint64) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("mknod", err)
	}
	_, err = d.Mknod(caller(), name, fs.TypeFromUnix(mode)|fs.PermFromUnix(mode), dev)
	return f.errc("mknod", err)
}

func (f *fsys) Symlink(target, p string) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("symlink", err)
	}
	_, err = d.Symlink(caller(), target, name)
	return f.errc("symlink", err)
}

func (f *fsys) Link(oldpath, newpath string) int {
	t, err := f.walk(oldpath)
	if err != nil {
		return f.errc("link", err)
	}
	d, name, err := f.mutable(newpath)
	if err != nil {
		return f.errc("link", err)
	}
	_, err = d.Link(caller(), t, name)
	return f.errc("link", err)
}

func (f *fsys) Unlink(p string) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("unlink", err)
	}
	return f.errc("unlink", d.Unlink(context.Background(), name))
}

func (f *fsys) Rmdir(p string) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("rmdir", err)
	}
	return f.errc("rmdir", d.Rmdir(context.Background(), name))
}

func (f *fsys) Rename(oldpath, newpath string) int { return f.Rename3(oldpath, newpath, 0) }

// Rename3 is renameat2: the target directory must be of the same tree
// (EXDEV otherwise, as fs/gofuse answers).
func (f *fsys) Rename3(oldpath, newpath string, flags uint32) int {
	d, name, err := f.mutable(oldpath)
	if err != nil {
		return f.errc("rename", err)
	}
	nd, newName, err := f.walkParent(newpath)
	if err != nil {
		return f.errc("rename", err)
	}
	nm, ok := nd.(fs.MutableDir)
	if !ok {
		return errcOf(syscall.EXDEV)
	}
	return f.errc("rename", d.Rename(context.Background(), name, nm, newName, fs.RenameFlags(flags)))
}

// openFlags turns FUSE's open flags into os.O_* flags: the same numbers
// on Linux, other ones on Windows.
func openFlags(fl int) int {
	var o int
	switch fl & fuse.O_ACCMODE {
	case fuse.O_WRONLY:
		o = os.O_WRONLY
	case fuse.O_RDWR:
		o = os.O_RDWR
	}
	for _, b := range [...]struct{ fuse, os int }{
		{fuse.O_APPEND, os.O_APPEND}, {fuse.O_CREAT, os.O_CREATE}, {fuse.O_EXCL, os.O_EXCL}, {fuse.O_TRUNC, os.O_TRUNC},
	} {
		if fl&b.fuse != 0 {
			o |= b.os
		}
	}
	return o
}

// OpenEx opens a regular file. The kernel keeps its pages
// (FOPEN_KEEP_CACHE), as fs/gofuse tells it: templates never change, and
// a clone changes only through this mount.
func (f *fsys) OpenEx(p string, fi *fuse.FileInfo_t) int {
	n, err := f.walk(p)
	if err != nil {
		return f.errc("open", err)
	}
	file, ok := n.(fs.File)
	if !ok {
		return errcOf(syscall.EISDIR)
	}
	h, err := file.Open(context.Background(), openFlags(fi.Flags))
	if err != nil {
		return f.errc("open", err)
	}
	fi.Fh = f.add(&handle{node: n, h: h})
	fi.KeepCache = true
	return 0
}

// CreateEx makes and opens a regular file.
func (f *fsys) CreateEx(p string, mode uint32, fi *fuse.FileInfo_t) int {
	d, name, err := f.mutable(p)
	if err != nil {
		return f.errc("create", err)
	}
	n, h, err := d.Create(caller(), name, fs.PermFromUnix(mode), openFlags(fi.Flags))
	if err != nil {
		return f.errc("create", err)
	}
	fi.Fh = f.add(&handle{node: n, h: h})
	fi.KeepCache = true
	return 0
}

// Open and Create are cgofuse's required forms; it calls OpenEx and
// CreateEx instead.
func (f *fsys) Open(p string, flags int) (int, uint64) {
	fi := fuse.FileInfo_t{Flags: flags}
	return f.OpenEx(p, &fi), fi.Fh
}

func (f *fsys) Create(p string, flags int, mode uint32) (int, uint64) {
	fi := fuse.FileInfo_t{Flags: flags}
	return f.CreateEx(p, mode, &fi), fi.Fh
}

func (f *fsys) Read(p string, buf []byte, ofst int64, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return errcOf(syscall.EBADF)
	}
	n, err := h.h.ReadAt(context.Background(), buf, ofst)
	if err != nil {
		return f.errc("read", err)
	}
	return n
}

func (f *fsys) Write(p string, buf []byte, ofst int64, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return errcOf(syscall.EBADF)
	}
	w, ok := h.h.(fs.WriteHandle)
	if !ok {
		return errcOf(syscall.EBADF)
	}
	n, err := w.WriteAt(context.Background(), buf, ofst)
	if err != nil && n == 0 {
		return f.errc("write", err)
	}
	return n // a short write; the caller's retry gets the error
}

// Flush (each close(2)) does nothing: Release commits, and fsync is the
// way to wait for durability.
func (f *fsys) Flush(p string, fh uint64) int { return 0 }

func (f *fsys) Release(p string, fh uint64) int {
	h := f.remove(fh)
	if h == nil {
		return errcOf(syscall.EBADF)
	}
	return f.errc("release", h.h.Release(context.Background()))
}

func (f *fsys) Fsync(p string, datasync bool, fh uint64) int {
	h := f.handle(fh)
	if h == nil {
		return f.Fsyncdir(p, datasync, fh)
	}
	w, ok := h.h.(fs.WriteHandle)
	if !ok {
		return 0
	}
	return f.errc("fsync", w.Sync(context.Background(), datasync))
}

// Fsyncdir commits a directory's own pending attribute changes, its
// entries being durable already.
func (f *fsys) Fsyncdir(p string, datasync bool, fh uint64) int {
	n, err := f.walk(p)
	if err != nil {
		return f.errc("fsync", err)
	}
	if s, ok := n.(fs.Syncer); ok {
		return f.errc("fsync", s.Sync(context.Background()))
	}
	return 0
}
