// Package export writes a template version out as an ordinary directory:
// the reverse of sync/publish. Holes stay holes (the files are sparse), and
// every block is verified against the signed manifest before it is written.
//
// The export restores what the manifest keeps: owners (when the manifest
// has them; all of them only when run by root), modes with setuid, setgid and sticky, atimes
// and mtimes to the nanosecond, FIFOs, sockets and device nodes, and hard
// links, made with link(2) to the primary entry's file, whose blocks are
// written once.
package export

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// Fetcher is what an export needs of the server (sync/client.Client): it
// calls fn with each block's verified plain bytes.
type Fetcher interface {
	Fetch(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, plain []byte) error) error
}

// place is where a block goes.
type place struct {
	file int
	off  int64
}

// Export writes m into dir, which must not exist or be empty.
//
// Entries are made in manifest order (a directory before what it holds, a
// hard link's primary before its other names), the blocks are written, and
// then, from the last entry to the first, each entry gets its owner, then
// its mode (chown clears setuid and setgid), then its times: every
// directory's times are set after all it holds, deepest first, so nothing
// changes them afterwards.
func Export(ctx context.Context, src Fetcher, m *manifest.Manifest, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return err
	} else if len(ents) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	handles := make(map[int]*os.File)
	defer func() {
		for _, f := range handles {
			f.Close()
		}
	}()
	where := make(map[blockstore.ID][]place)
	var order []blockstore.ID
	for i := range m.Files {
		f := &m.Files[i]
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f.Link != "" {
			// Another name of an earlier entry: its blocks are that
			// entry's, written there.
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(f.Link)), path); err != nil {
				return err
			}
			continue
		}
		switch typ := f.Mode.Type(); typ {
		case fs.ModeDir:
			if err := os.Mkdir(path, 0o700); err != nil {
				return err
			}
		case fs.ModeSymlink:
			if err := os.Symlink(f.Target, path); err != nil {
				return err
			}
		case 0:
			fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			handles[i] = fh
			if err := fh.Truncate(f.Size); err != nil {
				return err
			}
			for b, id := range f.Blocks {
				if id.IsHole() {
					continue
				}
				if _, ok := where[id]; !ok {
					order = append(order, id)
				}
				off, _ := f.BlockRange(m.BlockSize, b)
				where[id] = append(where[id], place{i, off})
			}
		default:
			if err := mknod(path, typ, f.Rdev); err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
		}
	}
	err := src.Fetch(ctx, order, func(id blockstore.ID, plain []byte) error {
		for _, p := range where[id] {
			_, n := m.Files[p.file].BlockRange(m.BlockSize, int((p.off)/int64(m.BlockSize)))
			if n != len(plain) {
				return fmt.Errorf("%s: block at %d is %d bytes, manifest says %d", m.Files[p.file].Path, p.off, len(plain), n)
			}
			if _, err := handles[p.file].WriteAt(plain, p.off); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Sync, then set owners, modes and times bottom-up so directories keep
	// theirs. A hard link's inode gets them by its primary entry.
	var errs []error
	for _, f := range handles {
		errs = append(errs, f.Sync())
	}
	for i := len(m.Files) - 1; i >= 0; i-- {
		f := &m.Files[i]
		if f.Link != "" {
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if m.Owners {
			errs = append(errs, chown(path, f.UID, f.GID))
		}
		if f.Mode.Type() != fs.ModeSymlink {
			// Symlinks have no mode of their own on Linux.
			errs = append(errs, os.Chmod(path, f.Mode&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)))
		}
		errs = append(errs, setTimes(path, f.ATime, f.MTime))
	}
	return errors.Join(errs...)
}
