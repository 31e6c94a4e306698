package main

import (
	"context"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

// The servers of one shared repository sign with one key: the first
// records its key's ID, the same key starts again, another is refused
// with what to copy.
func TestCheckSigningKey(t *testing.T) {
	ctx := context.Background()
	meta := memstore.New()
	if err := checkSigningKey(ctx, meta, "key-a"); err != nil {
		t.Fatal(err)
	}
	if err := checkSigningKey(ctx, meta, "key-a"); err != nil {
		t.Fatalf("the same key again: %v", err)
	}
	err := checkSigningKey(ctx, meta, "key-b")
	if err == nil || !strings.Contains(err.Error(), "server.key") || !strings.Contains(err.Error(), "key-a") {
		t.Fatalf("another key: %v", err)
	}
}
