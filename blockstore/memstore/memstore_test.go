package memstore_test

import (
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

func TestConformance(t *testing.T) {
	open := func(t *testing.T) storetest.Store {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, open, storetest.Options{
		Corrupt: func(t *testing.T, s storetest.Store, id blockstore.ID) {
			if !s.(*memstore.Store).Corrupt(id) {
				t.Fatalf("Corrupt: block %s is not stored", id.Short())
			}
		},
	})
}
