package fs

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Drop discards clone name's local overlay: its metadata under Meta
// (ovl/NAME/...) and its data files, so the next access starts afresh from
// the Catalog's manifest. It fails with an error wrapping ErrBusy when a
// file of the clone is open (then nothing is discarded); when it succeeds
// the clone is no longer loaded, and nodes of it handed out before fail
// with ErrNotExist. It waits for changes in progress (and a Seal) to
// finish, and holds off the loading of clones while it runs. A Drop cut
// short (a crash, a failing Meta) is finished by the next load.
func (fsys *FS) Drop(ctx context.Context, name string) error {
	if !validCloneName(name) {
		return fmt.Errorf("drop clone %q: %w", name, ErrInvalid)
	}
	fsys.loadMu.Lock()
	defer fsys.loadMu.Unlock()
	fsys.mu.Lock()
	c := fsys.loaded[name]
	fsys.mu.Unlock()
	if c != nil {
		if err := c.drop(); err != nil {
			return fmt.Errorf("drop clone %s: %w", name, err)
		}
		fsys.mu.Lock()
		delete(fsys.loaded, name)
		fsys.mu.Unlock()
	}
	if err := fsys.purge(ctx, name); err != nil {
		return fmt.Errorf("drop clone %s: %w", name, err)
	}
	fsys.log.Info("clone overlay dropped", "clone", name)
	return nil
}

// drop unloads c unless a file of it is open: later changes and opens
// fail, syncs do nothing, and the data files are closed.
func (c *clone) drop() error {
	c.change.Lock()
	defer c.change.Unlock()
	c.openMu.Lock()
	c.ns.RLock()
	defer c.ns.RUnlock()
	open := 0
	for _, n := range c.inodes {
		n.mu.Lock()
		if n.opens > 0 {
			open++
		}
		n.mu.Unlock()
	}
	if open > 0 {
		c.openMu.Unlock()
		return fmt.Errorf("%d files open: %w", open, ErrBusy)
	}
	c.dropped.Store(true)
	c.openMu.Unlock()
	for _, n := range c.inodes {
		// Under syncMu: a sync in progress (the periodic flush) finishes,
		// and later ones see gone and commit nothing.
		n.syncMu.Lock()
		n.mu.Lock()
		n.gone, n.discarded = true, true
		n.mu.Unlock()
		n.syncMu.Unlock()
		n.fileMu.Lock()
		if n.data != nil {
			if err := n.data.Close(); err != nil {
				c.fsys.log.Warn("closing a dropped clone's data file", "clone", c.name, "inode", n.ino, "err", err)
			}
			n.data = nil
		}
		n.fileMu.Unlock()
	}
	return nil
}

// purge deletes clone name's overlay from Meta, the header first (without
// it a load purges again), and then its data files.
func (fsys *FS) purge(ctx context.Context, name string) error {
	prefix := "ovl/" + name + "/"
	hdr := prefix + "hdr"
	meta := fsys.cfg.Meta
	var keys []string
	hasHdr := false
	err := meta.ListMeta(ctx, prefix, func(key string, _ []byte) error {
		switch {
		case key == hdr:
			hasHdr = true
		case strings.HasPrefix(key, prefix):
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if hasHdr {
		if err := meta.CommitMeta(ctx, blockstore.MetaOp{Key: hdr}); err != nil {
			return err
		}
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		ops := make([]blockstore.MetaOp, len(batch))
		for i, k := range batch {
			ops[i] = blockstore.MetaOp{Key: k}
		}
		if err := meta.CommitMeta(ctx, ops...); err != nil {
			return err
		}
	}
	return os.RemoveAll(fsys.cloneDir(name))
}
