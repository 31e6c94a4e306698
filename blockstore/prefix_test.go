package blockstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

func TestPrefixMeta(t *testing.T) {
	ctx := context.Background()
	base := memstore.New()
	alice := blockstore.PrefixMeta(base, "u/alice/")
	bob := blockstore.PrefixMeta(base, "u/bob/")
	if err := alice.CommitMeta(ctx, blockstore.MetaOp{Key: "ovl/x", Value: []byte("a"), Check: true}); err != nil {
		t.Fatal(err)
	}
	if err := bob.CommitMeta(ctx, blockstore.MetaOp{Key: "ovl/x", Value: []byte("b"), Check: true}); err != nil {
		t.Fatalf("bob's key clashed with alice's: %v", err)
	}
	if v, err := alice.GetMeta(ctx, "ovl/x"); err != nil || string(v) != "a" {
		t.Fatalf("alice reads %q %v", v, err)
	}
	var keys []string
	if err := bob.ListMeta(ctx, "ovl/", func(k string, v []byte) error { keys = append(keys, k+"="+string(v)); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "ovl/x=b" {
		t.Fatalf("bob lists %v", keys)
	}
	if _, err := base.GetMeta(ctx, "u/alice/ovl/x"); err != nil {
		t.Fatalf("not stored under the prefix: %v", err)
	}
	err := alice.CommitMeta(ctx, blockstore.MetaOp{Key: "ovl/x", Value: []byte("c"), Check: true, Old: []byte("b")})
	if !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("check against bob's value passed: %v", err)
	}
}
