package server_test

import (
	"context"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/client"
)

// BenchmarkFetchAccess measures what the read check (repo.Unreadable)
// adds to a fetch: batches of 64 template blocks fetched over HTTP from
// a badger store, by an admin (no check) and by a user.
func BenchmarkFetchAccess(b *testing.B) {
	e, _ := newBadgerEnv(b)
	ctx := context.Background()
	var plains [][]byte
	var batch []byte
	for i := range 256 {
		p := randomBlock(uint64(9000 + i))
		plains = append(plains, p)
		batch = append(batch, wholeRecord(p)...)
	}
	if err := e.admin.Upload(ctx, batch); err != nil {
		b.Fatal(err)
	}
	if err := e.repo.Settle(ctx); err != nil {
		b.Fatal(err)
	}
	commitTemplate(b, e.admin, "bench", plains...)
	tok, err := e.admin.CreateToken(ctx, "alice", "user")
	if err != nil {
		b.Fatal(err)
	}
	alice, _ := client.New(client.Config{Server: e.srv.URL, Token: tok.Token})
	ids := make([]blockstore.ID, len(plains))
	for i, p := range plains {
		ids[i] = blockstore.Sum(p)
	}
	for _, c := range []struct {
		name string
		cl   *client.Client
	}{{"admin", e.admin}, {"user", alice}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(64 * blockstore.DefaultBlockSize)
			for i := 0; b.Loop(); i++ {
				k := (i * 64) % len(ids)
				if err := c.cl.Fetch(ctx, ids[k:k+64], func(blockstore.ID, []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// The check alone, for a batch of 64.
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if no, err := e.repo.Unreadable(ctx, "alice", ids[:64]); err != nil || len(no) != 0 {
				b.Fatal(no, err)
			}
		}
	})
}
