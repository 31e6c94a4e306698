//go:build unix

package fs

import (
	"context"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Statfs describes the disk that holds the overlays, where a clone's
// writes go.
func (fsys *FS) Statfs(ctx context.Context) (Statfs, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(fsys.cfg.StateDir, &st); err != nil {
		return Statfs{}, fmt.Errorf("statfs %s: %w", fsys.cfg.StateDir, err)
	}
	return Statfs{
		BlockSize: int64(st.Bsize),
		Blocks:    st.Blocks,
		Free:      st.Bfree,
		Avail:     st.Bavail,
		Files:     st.Files,
		FilesFree: st.Ffree,
		NameLen:   MaxNameLen,
	}, nil
}

// checkSpace refuses a change that takes space when the disk of the
// overlays has less than Config.MinFree free: ENOSPC, before the disk
// is so full that the metadata stores cannot write.
func (fsys *FS) checkSpace() error {
	if fsys.cfg.MinFree <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(fsys.cfg.StateDir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", fsys.cfg.StateDir, err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < fsys.cfg.MinFree {
		return fmt.Errorf("%d bytes free on the cache disk, less than the %d kept in reserve: %w", free, fsys.cfg.MinFree, syscall.ENOSPC)
	}
	return nil
}
