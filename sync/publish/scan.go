package publish

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
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
		e, err := lstat(path)
		if err != nil {
			return err
		}
		e.f.Path = filepath.ToSlash(rel)
		switch e.f.Mode.Type() {
		case 0:
			e.f.Blocks = make([]blockID, (e.f.Size+int64(blockSize)-1)/int64(blockSize))
		case fs.ModeSymlink:
			if e.f.Target, err = os.Readlink(path); err != nil {
				return err
			}
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

// dataExtents returns the byte ranges of f that hold data, by SEEK_DATA and
// SEEK_HOLE, so the holes of a sparse file are never read. A filesystem
// without hole reporting gives one extent covering the file.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		start, ok, err := diskio.SeekData(f, off, false)
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		if !ok {
			break // only a hole remains
		}
		end, _, err := diskio.SeekData(f, start, true)
		if err != nil {
			return [][2]int64{{0, size}}, nil
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}
