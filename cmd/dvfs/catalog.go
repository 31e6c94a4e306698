package main

import (
	"context"
	"slices"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// catalogAdapter gives the filesystem (which declares fs.Catalog) the
// workstation catalog of sync/cache: fs and sync do not import each other.
// A clone's tree is the one its local overlay is based on, which the
// writeback knows.
type catalogAdapter struct {
	c      *cache.Catalog
	wb     *writeback.Writeback
	blocks *cache.Cache
	filled *sync.Map // clone name -> struct{}: background fill started
}

func (a catalogAdapter) Templates(ctx context.Context) ([]fs.TemplateInfo, error) {
	list, err := a.c.Templates(ctx)
	out := make([]fs.TemplateInfo, len(list))
	for i, t := range list {
		out[i] = fs.TemplateInfo{Name: t.Name, Versions: t.Versions}
	}
	return out, err
}

func (a catalogAdapter) Template(ctx context.Context, name string, version uint64) (*manifest.Manifest, error) {
	return a.c.Template(ctx, name, version)
}

func (a catalogAdapter) Clones(ctx context.Context) ([]string, error) { return a.c.Clones(ctx) }

func (a catalogAdapter) Clone(ctx context.Context, name string) (*manifest.Manifest, error) {
	m, err := a.wb.BaseManifest(ctx, name, func() (*manifest.Manifest, error) { return a.c.Clone(ctx, name) })
	if err == nil {
		if _, started := a.filled.LoadOrStore(name, struct{}{}); !started {
			// A clone opened here gets all its blocks, so it keeps
			// running if the server goes away.
			a.blocks.FillBackground(slices.Collect(m.BlockIDs()))
		}
	}
	return m, err
}
