package fs

import (
	"context"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
)

// statfsUnit is the block size Statfs counts in on Windows, which has no
// such unit of its own to report.
const statfsUnit = 4096

// Statfs describes the disk that holds the overlays, where a clone's
// writes go (GetDiskFreeSpaceEx; Windows counts no inodes, so neither
// does this).
func (fsys *FS) Statfs(ctx context.Context) (Statfs, error) {
	sp, err := diskio.Space(fsys.cfg.StateDir)
	if err != nil {
		return Statfs{}, err
	}
	return Statfs{
		BlockSize: statfsUnit,
		Blocks:    sp.Total / statfsUnit,
		Free:      sp.Free / statfsUnit,
		Avail:     sp.Avail / statfsUnit,
		NameLen:   MaxNameLen,
	}, nil
}

// checkSpace refuses a change that takes space when the disk of the
// overlays has less than Config.MinFree free: ENOSPC.
func (fsys *FS) checkSpace() error {
	return diskio.CheckFree(fsys.cfg.StateDir, 0, fsys.cfg.MinFree)
}
