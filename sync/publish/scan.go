package publish

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// scanTree lists dir as manifest entries, sorted by path, without reading
// file contents. Only directories, regular files and symlinks are allowed:
// a template holding a socket or device is refused rather than silently
// trimmed.
func scanTree(dir string, blockSize uint32) ([]manifest.File, error) {
	var files []manifest.File
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
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := manifest.File{
			Path:  filepath.ToSlash(rel),
			Mode:  info.Mode() & (fs.ModeType | fs.ModePerm),
			MTime: info.ModTime().UTC(),
		}
		switch {
		case info.Mode().IsRegular():
			f.Size = info.Size()
			f.Blocks = make([]blockID, (f.Size+int64(blockSize)-1)/int64(blockSize))
		case info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if f.Target, err = os.Readlink(path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %v files cannot be part of a template", path, info.Mode().Type())
		}
		files = append(files, f)
		return nil
	})
	slices.SortFunc(files, func(a, b manifest.File) int { return strings.Compare(a.Path, b.Path) })
	return files, err
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
