package storetest

import (
	"context"

	"github.com/dvfs-project/dvfs/blockstore"
)

// StagerStore is a Store that can also stage its puts.
type StagerStore interface {
	Store
	blockstore.Stager
}

// ViaStage is a store whose Put goes through Stage and CommitStaged, so
// that the suite, run on it, checks every promise of Put on the staged
// path.
type ViaStage struct{ StagerStore }

// Put stages the blocks and commits them at once.
func (s ViaStage) Put(ctx context.Context, blocks ...blockstore.Block) error {
	st, err := s.Stage(ctx, blocks...)
	if err != nil {
		return err
	}
	return s.CommitStaged(ctx, []blockstore.Staged{st})
}
