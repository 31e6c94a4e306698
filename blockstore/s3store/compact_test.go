package s3store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// packObjects lists the names of the pack objects in s's bucket.
func packObjects(t *testing.T, s *Store) []string {
	t.Helper()
	var names []string
	for o := range s.client.ListObjects(t.Context(), s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + "packs/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		names = append(names, o.Key)
	}
	slices.Sort(names)
	return names
}

// TestCompact deletes most blocks of one pack, some of another and all of
// a third: Compact rewrites the first, keeps the second, deletes the
// third, and every live block stays readable throughout, by readers that
// run while it works.
func TestCompact(t *testing.T) {
	srv := s3test.Start(t)
	s := openT(t, srv, Config{PackSize: minPackSize})
	ctx := t.Context()
	r := rand.New(rand.NewPCG(3, 4))
	const perPack = 15 // 15 incompressible 64 KiB frames fit in 1 MiB
	packs := make([][]blockstore.Block, 3)
	for i := range packs {
		for range perPack {
			packs[i] = append(packs[i], storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)))
		}
		if err := s.Put(ctx, packs[i]...); err != nil {
			t.Fatal(err)
		}
	}
	before := packObjects(t, s)
	if len(before) != 3 {
		t.Fatalf("%d pack objects after 3 Puts of one pack each", len(before))
	}
	deleted := append(append(slices.Clone(packs[0][:12]), packs[1][:5]...), packs[2]...)
	if err := s.Delete(ctx, storetest.IDs(deleted)...); err != nil {
		t.Fatal(err)
	}
	live := append(slices.Clone(packs[0][12:]), packs[1][5:]...)

	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; !stop.Load(); i++ {
				b := live[i%len(live)]
				got, err := s.Get(ctx, b.ID, nil)
				if err != nil || blockstore.Sum(got) != b.ID {
					t.Errorf("Get %s while compacting: %v", b.ID.Short(), err)
					return
				}
				reads.Add(1)
			}
		})
	}
	st, err := s.Compact(ctx)
	// Let the readers see the packs as they are after the compaction too.
	for n := reads.Load(); reads.Load() < n+int64(2*len(live)) && !t.Failed(); {
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	want := CompactStats{Rewritten: 2, Moved: 3, Freed: 2 * perPack * int64(len(packs[0][0].Frame))}
	if st != want {
		t.Errorf("Compact = %+v, want %+v (pack 0 rewritten, pack 2 emptied, pack 1 kept)", st, want)
	}
	after := packObjects(t, s)
	kept, _, err := s.lookup(ctx, packs[1][5].ID)
	if err != nil {
		t.Fatal(err)
	}
	moved, _, err := s.lookup(ctx, packs[0][12].ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{s.objectName(kept.pack), s.objectName(moved.pack)}; len(after) != 2 || !slices.Contains(after, want[0]) || !slices.Contains(after, want[1]) || slices.Contains(before, want[1]) {
		t.Errorf("pack objects after Compact: %v (before: %v); want the kept pack and a new one, %v", after, before, want)
	}
	for _, b := range live {
		got, err := s.Get(ctx, b.ID, nil)
		if err != nil || blockstore.Sum(got) != b.ID {
			t.Errorf("Get %s after Compact: %v", b.ID.Short(), err)
		}
	}
	for _, b := range deleted {
		if _, err := s.Get(ctx, b.ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
			t.Errorf("Get of deleted %s after Compact: %v, want ErrNotFound", b.ID.Short(), err)
		}
	}
	var walked []blockstore.ID
	if err := s.Walk(ctx, func(id blockstore.ID) error { walked = append(walked, id); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(walked) != len(live) {
		t.Errorf("Walk after Compact: %d blocks, want %d", len(walked), len(live))
	}
	// Nothing is left to do.
	if st, err := s.Compact(ctx); err != nil || st != (CompactStats{}) {
		t.Errorf("second Compact = %+v, %v; want nothing done", st, err)
	}
	if got := packObjects(t, s); !slices.Equal(got, after) {
		t.Errorf("second Compact changed the packs: %v, was %v", got, after)
	}
}

// TestCompactOrphan: a pack whose Put stopped between writing it and
// indexing it is removed once older than OrphanAge, and not before.
func TestCompactOrphan(t *testing.T) {
	srv := s3test.Start(t)
	s := openT(t, srv, Config{})
	ctx := t.Context()
	orphan := func(age time.Duration) packID {
		p := newPackID()
		rec := appendPackRecord(nil, packRecord{size: 5, born: time.Now().Add(-age)})
		if err := s.meta.CommitMeta(ctx, blockstore.MetaOp{Key: packKey(p), Value: rec}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.client.PutObject(ctx, s.cfg.Bucket, s.objectName(p), bytes.NewReader([]byte("stale")), 5, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old, young := orphan(2*DefaultOrphanAge), orphan(0)
	b := storetest.NewBlock([]byte("a block"))
	if err := s.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	st, err := s.Compact(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Orphans != 1 || st.Rewritten != 0 {
		t.Errorf("Compact = %+v, want 1 orphan removed", st)
	}
	objs := packObjects(t, s)
	if slices.Contains(objs, s.objectName(old)) || !slices.Contains(objs, s.objectName(young)) || len(objs) != 2 {
		t.Errorf("pack objects after Compact: %v; want the young orphan and the block's pack", objs)
	}
	if _, err := s.meta.GetMeta(ctx, packKey(old)); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("record of the removed orphan: %v, want ErrNotFound", err)
	}
	if got, err := s.Get(ctx, b.ID, nil); err != nil || string(got) != "a block" {
		t.Errorf("Get after Compact: %q, %v", got, err)
	}
}

// TestCompactSparesPackCommittedMeanwhile: a Put that commits between
// Compact's listing of the packs and its listing of the entries (here
// from the hook between the two) keeps its pack: judged on the entries
// alone it would look empty and be deleted under its blocks.
func TestCompactSparesPackCommittedMeanwhile(t *testing.T) {
	srv := s3test.Start(t)
	s := openT(t, srv, Config{})
	ctx := t.Context()
	b := storetest.NewBlock([]byte("put while compacting"))
	s.afterRecords = func() {
		if err := s.Put(ctx, b); err != nil {
			t.Error(err)
		}
	}
	if st, err := s.Compact(ctx); err != nil || st != (CompactStats{}) {
		t.Fatalf("Compact = %+v, %v; want nothing done", st, err)
	}
	s.afterRecords = nil
	if got, err := s.Get(ctx, b.ID, nil); err != nil || string(got) != "put while compacting" {
		t.Fatalf("Get of the block put during Compact: %q, %v", got, err)
	}
	if got := packObjects(t, s); len(got) != 1 {
		t.Errorf("pack objects: %v, want the Put's", got)
	}
}
