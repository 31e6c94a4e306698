package s3store

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// failPacks is a transport that refuses the PUTs of pack objects while
// fail is set, as an object store that is down or full would.
type failPacks struct{ fail atomic.Bool }

var errInjected = errors.New("injected: object store unreachable")

func (f *failPacks) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.fail.Load() && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/packs/") {
		return nil, errInjected
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestPutFailsCleanly: a Put whose pack cannot be written fails, no block
// of it is visible, and the pending pack it recorded is removed by Compact
// once old enough; the same Put then succeeds.
func TestPutFailsCleanly(t *testing.T) {
	srv := s3test.Start(t)
	ft := &failPacks{}
	s := openT(t, srv, Config{Transport: ft, OrphanAge: time.Nanosecond})
	ctx := t.Context()
	blocks := []blockstore.Block{storetest.NewBlock([]byte("one")), storetest.NewBlock([]byte("two"))}
	ft.fail.Store(true)
	if err := s.Put(ctx, blocks...); !errors.Is(err, errInjected) {
		t.Fatalf("Put with the object store failing: %v, want the transport's error", err)
	}
	if missing, err := s.Missing(ctx, storetest.IDs(blocks)); err != nil || len(missing) != len(blocks) {
		t.Fatalf("after a failed Put Missing = %d of %d, %v", len(missing), len(blocks), err)
	}
	ft.fail.Store(false)
	st, err := s.Compact(ctx)
	if err != nil || st.Orphans != 1 {
		t.Fatalf("Compact after a failed Put = %+v, %v; want its pending pack removed", st, err)
	}
	if err := s.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if _, err := s.Get(ctx, b.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := packObjects(t, s); len(got) != 1 {
		t.Errorf("pack objects: %v, want the one of the Put that worked", got)
	}
}

// TestReopen: what Put stored is there for a new process on the same
// bucket and metadata store, and Compact there frees what was deleted.
func TestReopen(t *testing.T) {
	srv := s3test.Start(t)
	metaDir := disktest.TempDir(t)
	const bucket = "dvfs-reopen"
	s := openAt(t, srv, bucket, metaDir, Config{})
	ctx := t.Context()
	keep, drop := storetest.NewBlock([]byte("kept")), storetest.NewBlock([]byte("dropped"))
	if err := s.Put(ctx, keep, drop); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitMeta(ctx, blockstore.MetaOp{Key: "tpl/x", Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, srv, bucket, metaDir, Config{})
	if got, err := s.Get(ctx, keep.ID, nil); err != nil || string(got) != "kept" {
		t.Fatalf("Get after reopening: %q, %v", got, err)
	}
	if v, err := s.GetMeta(ctx, "tpl/x"); err != nil || string(v) != "v1" {
		t.Fatalf("GetMeta after reopening: %q, %v", v, err)
	}
	if err := s.Delete(ctx, drop.ID, keep.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Compact(ctx); err != nil || st.Rewritten != 1 {
		t.Fatalf("Compact = %+v, %v; want the emptied pack rewritten away", st, err)
	}
	if got := packObjects(t, s); len(got) != 0 {
		t.Errorf("pack objects after deleting every block and compacting: %v", got)
	}
}
