// Package clones makes linked clones of templates: the client side of
// `dvfs clone create`. A new clone costs next to nothing: its first tree is
// its template's manifest, except that each .vmx gets the clone's own
// displayName, which makes one or two new blocks.
package clones

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Server is what making a clone needs (sync/client.Client).
type Server interface {
	Manifest(ctx context.Context, name string, version uint64) (*manifest.Manifest, []byte, error)
	Fetch(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, plain []byte) error) error
	Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error)
	Upload(ctx context.Context, batch []byte) error
	CreateClone(ctx context.Context, m *manifest.Manifest, template string, version uint64) (api.CloneInfo, error)
}

// Create records a new clone named name of template@version (0: latest).
func Create(ctx context.Context, srv Server, template string, version uint64, name string) (api.CloneInfo, error) {
	if err := manifest.ValidName(name); err != nil {
		return api.CloneInfo{}, err
	}
	tm, _, err := srv.Manifest(ctx, template, version)
	if err != nil {
		return api.CloneInfo{}, err
	}
	cm, err := firstTree(ctx, srv, tm, name)
	if err != nil {
		return api.CloneInfo{}, err
	}
	return srv.CreateClone(ctx, cm, tm.Name, tm.Version)
}

// SharedServer is what making a clone from a shared clone needs
// (sync/client.Client).
type SharedServer interface {
	Server
	CloneManifestOf(ctx context.Context, owner, name string) (*manifest.Manifest, []byte, error)
	CreateCloneFrom(ctx context.Context, m *manifest.Manifest, owner, src string) (api.CloneInfo, error)
}

// CreateFrom records a new clone named name of the latest generation of
// owner's clone src, which its owner shared with a group of the caller's:
// made as from a template, src is only read.
func CreateFrom(ctx context.Context, srv SharedServer, owner, src, name string) (api.CloneInfo, error) {
	if err := manifest.ValidName(name); err != nil {
		return api.CloneInfo{}, err
	}
	sm, _, err := srv.CloneManifestOf(ctx, owner, src)
	if err != nil {
		return api.CloneInfo{}, err
	}
	cm, err := firstTree(ctx, srv, sm, name)
	if err != nil {
		return api.CloneInfo{}, err
	}
	return srv.CreateCloneFrom(ctx, cm, owner, src)
}

// firstTree makes the first tree of clone name from tm (a template
// version's or a shared clone's manifest), uploading the blocks it
// changes.
func firstTree(ctx context.Context, srv Server, tm *manifest.Manifest, name string) (*manifest.Manifest, error) {
	cm := *tm
	cm.Kind, cm.Name, cm.Version, cm.Parent = manifest.KindClone, name, 0, 0
	cm.Files = slices.Clone(tm.Files)
	// A clone is the user's copy, as cp makes one: it keeps no owners, so
	// every workstation shows its entries as the mounting user's, not as
	// the publisher's (often root's, which the user could not write).
	cm.Owners = false
	for i := range cm.Files {
		cm.Files[i].UID, cm.Files[i].GID = 0, 0
	}
	var batch []byte
	for i := range cm.Files {
		f := &cm.Files[i]
		if !f.Mode.IsRegular() || f.Link != "" || !strings.EqualFold(path.Ext(f.Path), ".vmx") || f.Size > 1<<20 {
			continue
		}
		vmx, err := readFile(ctx, srv, tm, f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Path, err)
		}
		vmx = SetDisplayName(vmx, name)
		f.Size, f.Blocks = int64(len(vmx)), nil
		for off := 0; off < len(vmx); off += int(cm.BlockSize) {
			b := vmx[off:min(off+int(cm.BlockSize), len(vmx))]
			if blockstore.IsZero(b) {
				f.Blocks = append(f.Blocks, blockstore.Hole)
				continue
			}
			id := blockstore.Sum(b)
			f.Blocks = append(f.Blocks, id)
			batch = api.AppendBlock(batch, id, blockstore.Encode(nil, b))
		}
	}
	for i := range cm.Files {
		// A further name of a rewritten .vmx shows the rewritten bytes.
		if f := &cm.Files[i]; f.Link != "" {
			if p, ok := cm.Lookup(f.Link); ok {
				f.Size, f.Blocks = p.Size, p.Blocks
			}
		}
	}
	if len(batch) > 0 {
		if err := srv.Upload(ctx, batch); err != nil {
			return nil, err
		}
	}
	return &cm, nil
}

// readFile assembles a small file of m from its blocks.
func readFile(ctx context.Context, srv Server, m *manifest.Manifest, f *manifest.File) ([]byte, error) {
	out := make([]byte, f.Size)
	var ids []blockstore.ID
	for _, id := range f.Blocks {
		if !id.IsHole() && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	err := srv.Fetch(ctx, ids, func(id blockstore.ID, plain []byte) error {
		for b, bid := range f.Blocks {
			if bid == id {
				off, n := f.BlockRange(m.BlockSize, b)
				if n != len(plain) {
					return fmt.Errorf("block %d is %d bytes, manifest says %d", b, len(plain), n)
				}
				copy(out[off:], plain)
			}
		}
		return nil
	})
	return out, err
}
