package publish

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// scanned is an entry of the tree with what tells hard links apart.
type scanned struct {
	f     manifest.File
	dev   uint64
	ino   uint64
	nlink uint64
}

// scanTree lists dir as manifest entries, sorted by path, without reading
// file contents or opening anything but directories. Every entry keeps its
// owner and group, its mode (setuid, setgid and sticky included), its atime
// and mtime to the nanosecond; FIFOs, sockets and device nodes are entries
// of their own (with Rdev for devices). Non-directories that share a
// (device, inode) are hard links: the first of them in path order is the
// primary entry, and each other name is an entry with Link set to the
// primary's path and the primary's fields. Only the primary lists blocks
// to fill in (a link's Blocks stay nil until fillLinks sets them), so its
// data is read once.
func scanTree(dir string, blockSize uint32) ([]manifest.File, error) {
	var ents []scanned
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		mode, ok := fileMode(st.Mode)
		if !ok {
			return fmt.Errorf("%s: file type %#o cannot be part of a template", path, st.Mode&unix.S_IFMT)
		}
		f := manifest.File{
			Path:  filepath.ToSlash(rel),
			Mode:  mode,
			MTime: time.Unix(st.Mtim.Unix()).UTC(),
			ATime: time.Unix(st.Atim.Unix()).UTC(),
			UID:   st.Uid,
			GID:   st.Gid,
		}
		switch mode.Type() {
		case 0:
			f.Size = st.Size
			f.Blocks = make([]blockID, (f.Size+int64(blockSize)-1)/int64(blockSize))
		case fs.ModeDir:
		case fs.ModeSymlink:
			if f.Target, err = os.Readlink(path); err != nil {
				return err
			}
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			f.Rdev = uint64(st.Rdev)
		}
		e := scanned{f: f}
		if !mode.IsDir() && st.Nlink > 1 {
			e.dev, e.ino, e.nlink = uint64(st.Dev), st.Ino, uint64(st.Nlink)
		}
		ents = append(ents, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(ents, func(a, b scanned) int { return strings.Compare(a.f.Path, b.f.Path) })
	type inode struct{ dev, ino uint64 }
	primaries := make(map[inode]int) // index into files of an inode's first name
	files := make([]manifest.File, len(ents))
	for i := range ents {
		e := &ents[i]
		files[i] = e.f
		if e.nlink == 0 {
			continue
		}
		k := inode{e.dev, e.ino}
		p, ok := primaries[k]
		if !ok {
			primaries[k] = i
			continue
		}
		// Another name of an inode already listed: the primary's fields,
		// so the two agree even if the inode changed between the lstats.
		l := files[p]
		l.Path, l.Link, l.Blocks = e.f.Path, files[p].Path, nil
		files[i] = l
	}
	return files, nil
}

// fillLinks gives each hard link entry its primary's blocks, once the
// primary's are known: the same slice, as manifest.Unmarshal gives.
func fillLinks(files []manifest.File) {
	var index map[string]int
	for i := range files {
		f := &files[i]
		if f.Link == "" {
			continue
		}
		if index == nil {
			index = make(map[string]int, len(files))
			for j := range files {
				if files[j].Link == "" {
					index[files[j].Path] = j
				}
			}
		}
		f.Blocks = files[index[f.Link]].Blocks
	}
}

// fileMode converts st_mode to an fs.FileMode (as os.Lstat does); false
// for a file type it does not know.
func fileMode(m uint32) (fs.FileMode, bool) {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	default:
		return 0, false
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode, true
}

// dataExtents returns the byte ranges of f that hold data, by SEEK_DATA and
// SEEK_HOLE, so the holes of a sparse file are never read. A filesystem
// without hole reporting gives one extent covering the file.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	fd := int(f.Fd())
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole remains
		}
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}
