//go:build !linux

package publish

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// lstat returns path's entry without its path, blocks or target, from
// what os.Lstat tells everywhere: its type and permission bits, its size
// and mtime (the atime too). Owners, device numbers and hard
// links are Linux's: here every name is a file of its own (a hard link's
// data is read once per name) and the owner is left 0, root.
func lstat(path string) (scanned, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return scanned{}, err
	}
	mode := st.Mode()
	if t := mode.Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
		return scanned{}, &fs.PathError{Op: "scan", Path: path, Err: fmt.Errorf("file type %v cannot be part of a template", mode.Type())}
	}
	e := scanned{f: manifest.File{Mode: mode, MTime: st.ModTime().UTC(), ATime: st.ModTime().UTC()}}
	if mode.IsRegular() {
		e.f.Size = st.Size()
	}
	return e, nil
}
