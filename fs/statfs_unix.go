//go:build unix

package fs

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
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
	return diskio.CheckFree(fsys.cfg.StateDir, 0, fsys.cfg.MinFree)
}
