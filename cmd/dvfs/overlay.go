package main

import (
	"context"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// overlayAdapter gives the writeback (which declares writeback.Overlay) the
// filesystem's overlays: fs and sync do not import each other.
type overlayAdapter struct{ fs *fs.FS }

func (a overlayAdapter) Seal(ctx context.Context, clone string, fn func([]writeback.Entry, writeback.Reader) error) error {
	return a.fs.Seal(ctx, clone, func(entries []fs.SealedEntry, r *fs.SealReader) error {
		out := make([]writeback.Entry, len(entries))
		for i, e := range entries {
			out[i] = writeback.Entry{
				Path: e.Path, Ino: e.Ino, Mode: e.Mode, MTime: e.MTime, ATime: e.ATime,
				UID: e.Owner.UID, GID: e.Owner.GID, Rdev: e.Rdev, Target: e.Target, Size: e.Size,
				BasePath: e.BasePath, BaseSize: e.BaseSize, Local: e.Local, Dirty: e.Dirty,
				DirtySectors: e.DirtySectors, LocalSectors: e.LocalSectors, SectorSize: e.SectorSize, Shrunk: e.Shrunk,
			}
		}
		return fn(out, r)
	})
}

func (a overlayAdapter) Drop(ctx context.Context, clone string) error { return a.fs.Drop(ctx, clone) }

// Changes counts the clone's changes, so dvfs status can tell changes not
// sealed yet from a synced clone.
func (a overlayAdapter) Changes(clone string) uint64 { return a.fs.Changes(clone) }
