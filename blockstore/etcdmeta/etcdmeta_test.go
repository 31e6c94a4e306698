package etcdmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/blockstore/s3store"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// The cluster's limits in these tests: what DESIGN.md asks of a
// deployment.
const (
	testMaxTxnOps       = 8192
	testMaxRequestBytes = 8 << 20
)

var seq atomic.Int64

// openT opens a store on c under a new prefix, closed when the test ends.
func openT(t testing.TB, c *etcdtest.Cluster, cfg Config) *Store {
	t.Helper()
	cfg.Endpoints = c.Endpoints()
	if cfg.Prefix == "" {
		cfg.Prefix = fmt.Sprintf("dvfs-test-%d/", seq.Add(1))
	}
	if cfg.MaxTxnOps == 0 {
		cfg.MaxTxnOps = testMaxTxnOps
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = testMaxRequestBytes
	}
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func startCluster(t testing.TB) *etcdtest.Cluster {
	return etcdtest.Start(t, etcdtest.Options{MaxTxnOps: testMaxTxnOps, MaxRequestBytes: testMaxRequestBytes})
}

// TestConformance runs the block store suite on s3store with its index and
// metadata in etcd: blocks in the S3 server, everything else in a
// three-member cluster.
func TestConformance(t *testing.T) {
	c := startCluster(t)
	srv := s3test.Start(t)
	open := func(t *testing.T) storetest.Store { return openS3(t, c, srv, Config{}, s3store.Config{}) }
	storetest.Run(t, open, storetest.Options{})
}

// openS3 opens an s3store on a new bucket of srv, its metadata in c under a
// new prefix; cfg's and scfg's zero fields take the defaults.
func openS3(t testing.TB, c *etcdtest.Cluster, srv *s3test.Server, cfg Config, scfg s3store.Config) *s3store.Store {
	t.Helper()
	scfg.Endpoint = srv.Endpoint
	scfg.AccessKey, scfg.SecretKey, scfg.Region = s3test.AccessKey, s3test.SecretKey, s3test.Region
	scfg.Bucket = fmt.Sprintf("dvfs-etcd-%d", seq.Add(1))
	scfg.CreateBucket = true
	scfg.Meta = openT(t, c, cfg)
	s, err := s3store.Open(t.Context(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestS3StoreCommitsFit shows s3store's MaxCommitOps keeping its commits
// within the cluster's --max-txn-ops: with a limit of 16, Puts, staged
// uploads and Deletes of 100 small blocks each go through, in packs of
// at most 15 blocks, where without the bound the Put's one pack is
// refused as too large.
func TestS3StoreCommitsFit(t *testing.T) {
	c := startCluster(t)
	srv := s3test.Start(t)
	const limit, n = 16, 100
	blocks := func(seed byte) []blockstore.Block {
		var bs []blockstore.Block
		for i := range n {
			bs = append(bs, storetest.NewBlock([]byte{seed, byte(i), 'b', 'l', 'o', 'c', 'k'}))
		}
		return bs
	}
	ctx := t.Context()

	unbounded := openS3(t, c, srv, Config{MaxTxnOps: limit}, s3store.Config{})
	if err := unbounded.Put(ctx, blocks(0)...); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put of %d blocks in one pack, %d ops at most: %v, want ErrTooLarge", n, limit, err)
	}

	s := openS3(t, c, srv, Config{MaxTxnOps: limit}, s3store.Config{MaxCommitOps: limit})
	put, staged := blocks(1), blocks(2)
	if err := s.Put(ctx, put...); err != nil {
		t.Fatalf("Put: %v", err)
	}
	var sts []blockstore.Staged
	for i := 0; i < n; i += 10 {
		st, err := s.Stage(ctx, staged[i:i+10]...)
		if err != nil {
			t.Fatalf("Stage: %v", err)
		}
		sts = append(sts, st)
	}
	if err := s.CommitStaged(ctx, sts); err != nil {
		t.Fatalf("CommitStaged: %v", err)
	}
	all := append(storetest.IDs(put), storetest.IDs(staged)...)
	if missing, err := s.Missing(ctx, all); err != nil || len(missing) != 0 {
		t.Fatalf("after Put and CommitStaged: %d missing, %v", len(missing), err)
	}
	if err := s.Delete(ctx, all...); err != nil {
		t.Fatalf("Delete of %d blocks: %v", len(all), err)
	}
	if missing, err := s.Missing(ctx, all); err != nil || len(missing) != len(all) {
		t.Fatalf("after Delete: %d of %d missing, %v", len(missing), len(all), err)
	}
}

func commit(t *testing.T, s *Store, ops ...blockstore.MetaOp) {
	t.Helper()
	if err := s.CommitMeta(t.Context(), ops...); err != nil {
		t.Fatalf("CommitMeta: %v", err)
	}
}

func put(k, v string) blockstore.MetaOp { return blockstore.MetaOp{Key: k, Value: []byte(v)} }

func list(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	var got []string
	err := s.ListMeta(t.Context(), prefix, func(k string, v []byte) error {
		got = append(got, k+"="+string(v))
		return nil
	})
	if err != nil {
		t.Fatalf("ListMeta(%q): %v", prefix, err)
	}
	return got
}

// TestStore checks what is etcd's own: prefixes that keep repositories
// apart, a paged listing that is one snapshot, checks decided within a
// commit, and the limits.
func TestStore(t *testing.T) {
	c := startCluster(t)

	t.Run("Prefixes", func(t *testing.T) {
		a := openT(t, c, Config{Prefix: "repo-a/"})
		b := openT(t, c, Config{Prefix: "repo-a-b/"})
		commit(t, a, put("k", "a"))
		commit(t, b, put("k", "b"))
		if got := list(t, a, ""); strings.Join(got, ",") != "k=a" {
			t.Errorf("repo-a/ lists %q, want only its own k=a", got)
		}
		if v, err := b.GetMeta(t.Context(), "k"); err != nil || string(v) != "b" {
			t.Errorf("repo-a-b/ k = %q, %v; want b", v, err)
		}
	})

	t.Run("PagedSnapshot", func(t *testing.T) {
		s := openT(t, c, Config{PageSize: 3})
		var want []string
		for i := range 10 {
			k := fmt.Sprintf("p/%02d", i)
			commit(t, s, put(k, "v"))
			want = append(want, k+"=v")
		}
		commit(t, s, put("q", "outside"))
		// Change keys of later pages while the first is being listed:
		// the listing must still show the keys as they were.
		var got []string
		changed := false
		err := s.ListMeta(t.Context(), "p/", func(k string, v []byte) error {
			if !changed {
				changed = true
				commit(t, s, put("p/05", "new"), blockstore.MetaOp{Key: "p/09"}, put("p/07a", "new"))
			}
			got = append(got, k+"="+string(v))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("listing during changes:\n got %q\nwant %q", got, want)
		}
		after := list(t, s, "p/")
		if len(after) != 10 || after[5] != "p/05=new" || after[8] != "p/07a=new" {
			t.Errorf("after the changes: %q", after)
		}
	})

	t.Run("PagesOfLargeValues", func(t *testing.T) {
		s := openT(t, c, Config{})
		const n, size = 24, 1 << 20
		for i := range n {
			commit(t, s, blockstore.MetaOp{Key: fmt.Sprintf("m/%02d", i), Value: bytes.Repeat([]byte{byte(i)}, size)})
		}
		var pages []int
		s.onPage = func(keys, bytes int) {
			pages = append(pages, keys)
			if bytes > pageBytes+size {
				t.Errorf("a page of %d keys, %d bytes", keys, bytes)
			}
		}
		i := 0
		err := s.ListMeta(t.Context(), "m/", func(k string, v []byte) error {
			if k != fmt.Sprintf("m/%02d", i) || len(v) != size || v[0] != byte(i) {
				t.Errorf("entry %d: %s, %d bytes", i, k, len(v))
			}
			i++
			return nil
		})
		if err != nil || i != n {
			t.Fatalf("listed %d of %d: %v", i, n, err)
		}
		t.Logf("pages of keys: %v", pages)
	})

	t.Run("CheckAfterOwnWrite", func(t *testing.T) {
		s := openT(t, c, Config{})
		commit(t, s, put("k", "old"))
		// The second check sees the first op's write, not etcd's value.
		commit(t, s,
			blockstore.MetaOp{Key: "k", Value: []byte("mid"), Check: true, Old: []byte("old")},
			blockstore.MetaOp{Key: "k", Value: []byte("new"), Check: true, Old: []byte("mid")},
			blockstore.MetaOp{Key: "gone"},
			blockstore.MetaOp{Key: "gone", Value: []byte("x"), Check: true},
		)
		err := s.CommitMeta(t.Context(),
			put("other", "x"),
			blockstore.MetaOp{Key: "k", Value: []byte("z"), Check: true, Old: []byte("old")},
		)
		if !errors.Is(err, blockstore.ErrConflict) {
			t.Fatalf("stale check: %v, want ErrConflict", err)
		}
		err = s.CommitMeta(t.Context(),
			blockstore.MetaOp{Key: "k"},
			blockstore.MetaOp{Key: "k", Value: []byte("z"), Check: true, Old: []byte{}},
		)
		if !errors.Is(err, blockstore.ErrConflict) {
			t.Fatalf("check for an empty value after the commit's delete: %v, want ErrConflict", err)
		}
		if got := strings.Join(list(t, s, ""), ","); got != "gone=x,k=new" {
			t.Errorf("after the commits: %q, want gone=x,k=new", got)
		}
	})

	t.Run("TooManyOps", func(t *testing.T) {
		ops := make([]blockstore.MetaOp, testMaxTxnOps+1)
		for i := range ops {
			ops[i] = put(fmt.Sprintf("op/%d", i), "v")
		}
		// Refused by the client, which knows the cluster's limit...
		s := openT(t, c, Config{})
		if err := s.CommitMeta(t.Context(), ops...); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "--max-txn-ops") {
			t.Errorf("commit of %d ops: %v, want ErrTooLarge naming --max-txn-ops", len(ops), err)
		}
		// ...and by the cluster, for a client told a larger one.
		s = openT(t, c, Config{MaxTxnOps: 2 * testMaxTxnOps})
		if err := s.CommitMeta(t.Context(), ops...); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "--max-txn-ops") {
			t.Errorf("commit of %d ops: %v, want ErrTooLarge naming --max-txn-ops", len(ops), err)
		}
		if got := list(t, s, "op/"); len(got) != 0 {
			t.Errorf("%d keys of a refused commit are present", len(got))
		}
		if err := s.CommitMeta(t.Context(), ops[:testMaxTxnOps]...); err != nil {
			t.Errorf("commit of %d ops: %v", testMaxTxnOps, err)
		}
	})

	t.Run("TooManyBytes", func(t *testing.T) {
		big := bytes.Repeat([]byte{'x'}, testMaxRequestBytes+1)
		for _, cfg := range []Config{{}, {MaxRequestBytes: 4 * testMaxRequestBytes}} {
			s := openT(t, c, cfg)
			err := s.CommitMeta(t.Context(), put("small", "v"), blockstore.MetaOp{Key: "big", Value: big})
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("MaxRequestBytes %d: commit of %d bytes: %v, want ErrTooLarge", cfg.MaxRequestBytes, len(big), err)
			}
			if _, err := s.GetMeta(t.Context(), "small"); !errors.Is(err, blockstore.ErrNotFound) {
				t.Errorf("the refused commit's small key: %v, want ErrNotFound", err)
			}
		}
	})

	t.Run("Cancelled", func(t *testing.T) {
		s := openT(t, c, Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.CommitMeta(ctx, put("k", "v")); !errors.Is(err, context.Canceled) {
			t.Errorf("CommitMeta: %v, want context.Canceled", err)
		}
		if _, err := s.GetMeta(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Errorf("GetMeta: %v, want context.Canceled", err)
		}
		s.Close()
		if _, err := s.GetMeta(t.Context(), "k"); !errors.Is(err, blockstore.ErrClosed) {
			t.Errorf("GetMeta after Close: %v, want ErrClosed", err)
		}
	})
}
