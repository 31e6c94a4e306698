// Package storetest is the conformance suite for blockstore implementations.
// Every implementation runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store { ... }, storetest.Options{...})
//	}
//
// Each subtest opens a fresh, empty store and checks one contract written on
// blockstore.Store or blockstore.MetaStore.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Store is what the suite checks: a block store that also keeps metadata.
type Store interface {
	blockstore.Store
	blockstore.MetaStore
}

// Options are the optional abilities an implementation lends the suite.
type Options struct {
	// Corrupt tampers with the stored bytes of block id (as a bit flip on
	// disk would), so that they no longer hash to id. Without it the
	// corruption subtest is skipped.
	Corrupt func(t *testing.T, s Store, id blockstore.ID)
	// Plain says the store keeps every block decoded (a workstation's
	// cache: badgerstore's VerifiedPuts): GetFrame returns a raw frame of
	// the block rather than the frame put, and no frame is left deferred
	// for CompressDeferred.
	Plain bool
}

// Run runs the suite. open must return a new, empty store and arrange (with
// t.Cleanup) for it to be closed; the suite may close it first, so Close
// must be idempotent.
func Run(t *testing.T, open func(t *testing.T) Store, opts Options) {
	s := &suite{open: open, opts: opts}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"PutGet", s.testPutGet},
		{"PutDoesNotKeepCallerBuffers", s.testPutCopies},
		{"PutIdempotent", s.testPutIdempotent},
		{"PutMany", s.testPutMany},
		{"NotFound", s.testNotFound},
		{"Missing", s.testMissing},
		{"Delete", s.testDelete},
		{"Walk", s.testWalk},
		{"Corrupt", s.testCorrupt},
		{"Meta", s.testMeta},
		{"MetaCheck", s.testMetaCheck},
		{"CommitMetaAtomic", s.testCommitMetaAtomic},
		{"CommitMetaInOrder", s.testCommitMetaInOrder},
		{"CommitMetaDelete", s.testCommitMetaDelete},
		{"CommitMetaConcurrent", s.testCommitMetaConcurrent},
		{"ListMeta", s.testListMeta},
		{"Namespaces", s.testNamespaces},
		{"ContextCancelled", s.testContextCancelled},
		{"ContextCancelledDuringLoop", s.testContextCancelledDuringLoop},
		{"Concurrent", s.testConcurrent},
		{"Closed", s.testClosed},
		{"CompressDeferred", s.testCompressDeferred},
		{"CompressDeferredConcurrent", s.testCompressDeferredConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	open func(t *testing.T) Store
	opts Options
}

// rng returns a generator seeded by the test's name, so every subtest has
// its own blocks and a failure replays the same data.
func rng(t *testing.T) *rand.Rand {
	var seed uint64
	for _, c := range t.Name() {
		seed = seed*31 + uint64(c)
	}
	return rand.New(rand.NewPCG(seed, 0x6476667331))
}

// RandomBytes returns n incompressible bytes.
func RandomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := i; j < i+8 && j < n; j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

// CompressibleBytes returns n bytes that zstd shrinks about fourfold, like
// text or program code: runs copied from a small random dictionary, with
// a few random bytes between them.
func CompressibleBytes(r *rand.Rand, n int) []byte {
	dict := RandomBytes(r, 1024)
	b := make([]byte, 0, n+64)
	for len(b) < n {
		off := r.IntN(len(dict) - 64)
		b = append(b, dict[off:off+8+r.IntN(56)]...)
		b = append(b, byte(r.Uint32()))
	}
	return b[:n]
}

// IDs returns the IDs of blocks, in order.
func IDs(blocks []blockstore.Block) []blockstore.ID {
	out := make([]blockstore.ID, len(blocks))
	for i, b := range blocks {
		out[i] = b.ID
	}
	return out
}

// NewBlock frames plain as a store expects it.
func NewBlock(plain []byte) blockstore.Block {
	return blockstore.Block{ID: blockstore.Sum(plain), Frame: blockstore.Encode(nil, plain)}
}

// smallBlocks returns n distinct small blocks.
func smallBlocks(r *rand.Rand, n int) []blockstore.Block {
	bs := make([]blockstore.Block, n)
	for i := range bs {
		bs[i] = NewBlock(RandomBytes(r, 100))
	}
	return bs
}

func put(t *testing.T, st Store, blocks ...blockstore.Block) {
	t.Helper()
	if err := st.Put(t.Context(), blocks...); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func commit(t *testing.T, st Store, ops ...blockstore.MetaOp) {
	t.Helper()
	if err := st.CommitMeta(t.Context(), ops...); err != nil {
		t.Fatalf("CommitMeta: %v", err)
	}
}

// set returns an unconditional op that sets key to value.
func set(key, value string) blockstore.MetaOp {
	return blockstore.MetaOp{Key: key, Value: []byte(value)}
}

// checkGet checks that Get and GetFrame return the block, appended to a
// prefix.
func checkGet(t *testing.T, st Store, id blockstore.ID, plain []byte) {
	t.Helper()
	ctx := t.Context()
	prefix := []byte("prefix")
	got, err := st.Get(ctx, id, slices.Clone(prefix))
	if err != nil {
		t.Fatalf("Get %s: %v", id.Short(), err)
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], plain) {
		t.Fatalf("Get %s: got %d bytes, want %q + the %d bytes of the block", id.Short(), len(got), prefix, len(plain))
	}
	frame, err := st.GetFrame(ctx, id, slices.Clone(prefix))
	if err != nil {
		t.Fatalf("GetFrame %s: %v", id.Short(), err)
	}
	if !bytes.HasPrefix(frame, prefix) {
		t.Fatalf("GetFrame %s: dst prefix lost", id.Short())
	}
	if _, err := blockstore.Open(id, frame[len(prefix):], nil); err != nil {
		t.Fatalf("GetFrame %s returned a frame that does not open: %v", id.Short(), err)
	}
}

func (s *suite) testPutGet(t *testing.T) {
	r := rng(t)
	cases := []struct {
		name       string
		plain      []byte
		compressed bool // the frame must be zstd, so both codecs are covered
	}{
		{"raw", RandomBytes(r, blockstore.DefaultBlockSize), false},
		{"zstd", CompressibleBytes(r, blockstore.DefaultBlockSize), true},
		{"short-raw", RandomBytes(r, 1000), false},
		{"short-zstd", CompressibleBytes(r, 12345), true},
		{"one-byte", []byte{42}, false},
		{"empty", []byte{}, false},
		{"max-size", CompressibleBytes(r, blockstore.MaxBlockSize), true},
	}
	st := s.open(t)
	var blocks []blockstore.Block
	for _, c := range cases {
		b := NewBlock(c.plain)
		if compressed := len(b.Frame) < len(c.plain); compressed != c.compressed {
			t.Fatalf("%s: frame of %d bytes for %d plain bytes: compressed=%v, want %v", c.name, len(b.Frame), len(c.plain), compressed, c.compressed)
		}
		blocks = append(blocks, b)
	}
	put(t, st, blocks...)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkGet(t, st, blocks[i].ID, c.plain)
			frame, err := st.GetFrame(t.Context(), blocks[i].ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case s.opts.Plain:
				if raw := append(blockstore.AppendRawHeader(nil, len(c.plain)), c.plain...); !bytes.Equal(frame, raw) {
					t.Errorf("GetFrame of a store that keeps blocks plain returned %d bytes, not the raw frame", len(frame))
				}
			case !bytes.Equal(frame, blocks[i].Frame):
				t.Errorf("GetFrame returned another frame than the one put")
			}
			// The caller owns what Get returns: scribbling on it must not
			// reach the store.
			got, err := st.Get(t.Context(), blocks[i].ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			for j := range got {
				got[j] ^= 0xff
			}
			frame[len(frame)-1] ^= 0xff
			checkGet(t, st, blocks[i].ID, c.plain)
		})
	}
}

func (s *suite) testPutCopies(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	plains := [][]byte{RandomBytes(r, blockstore.DefaultBlockSize), CompressibleBytes(r, blockstore.DefaultBlockSize), RandomBytes(r, 200)}
	var blocks []blockstore.Block
	for _, p := range plains {
		blocks = append(blocks, NewBlock(p))
	}
	put(t, st, blocks...)
	// The caller may reuse its buffers as soon as Put returns.
	for _, b := range blocks {
		for i := range b.Frame {
			b.Frame[i] = 0xee
		}
	}
	for i, p := range plains {
		checkGet(t, st, blocks[i].ID, p)
	}
}

func (s *suite) testPutIdempotent(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	a := NewBlock(CompressibleBytes(r, blockstore.DefaultBlockSize))
	b := NewBlock(RandomBytes(r, 3000))
	put(t, st, a)
	put(t, st, a, b, a, b)
	put(t, st, a)
	checkGet(t, st, a.ID, mustDecode(t, a))
	checkGet(t, st, b.ID, mustDecode(t, b))
	if got := walkAll(t, st); len(got) != 2 {
		t.Errorf("Walk after putting 2 distinct blocks several times: %d ids, want 2", len(got))
	}
	put(t, st) // no blocks at all
}

func (s *suite) testPutMany(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	blocks := make([]blockstore.Block, 1000)
	ids := make([]blockstore.ID, len(blocks))
	for i := range blocks {
		blocks[i] = NewBlock(RandomBytes(r, 1500+i))
		ids[i] = blocks[i].ID
	}
	put(t, st, blocks...)
	missing, err := st.Missing(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Errorf("Missing after putting 1000 blocks in one call: %d missing", len(missing))
	}
	for _, i := range []int{0, 499, 999} {
		checkGet(t, st, blocks[i].ID, mustDecode(t, blocks[i]))
	}
}

func mustDecode(t *testing.T, b blockstore.Block) []byte {
	t.Helper()
	p, err := blockstore.Open(b.ID, b.Frame, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *suite) testNotFound(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	id := blockstore.Sum([]byte("never stored"))
	put(t, st, NewBlock([]byte("stored")))
	if got, err := st.Get(ctx, id, []byte("x")); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("Get absent block: err = %v, want ErrNotFound", err)
	} else if len(got) > 1 {
		t.Errorf("Get absent block appended %d bytes", len(got)-1)
	}
	if got, err := st.GetFrame(ctx, id, []byte("x")); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("GetFrame absent block: err = %v, want ErrNotFound", err)
	} else if len(got) > 1 {
		t.Errorf("GetFrame absent block appended %d bytes", len(got)-1)
	}
	if _, err := st.GetMeta(ctx, "never set"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("GetMeta absent key: err = %v, want ErrNotFound", err)
	}
}

func (s *suite) testMissing(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	ctx := t.Context()
	blocks := smallBlocks(r, 6)
	put(t, st, blocks[0], blocks[2], blocks[4])
	bs := ids(blocks...)
	tests := []struct {
		name string
		ids  []blockstore.ID
		want []blockstore.ID
	}{
		{"none", nil, nil},
		{"all present", []blockstore.ID{bs[4], bs[0]}, nil},
		{"all missing", []blockstore.ID{bs[5], bs[1], bs[3]}, []blockstore.ID{bs[5], bs[1], bs[3]}},
		{"mixed, order kept", []blockstore.ID{bs[3], bs[0], bs[1], blockstore.Hole, bs[2], bs[5], bs[4]}, []blockstore.ID{bs[3], bs[1], bs[5]}},
		{"holes never missing", []blockstore.ID{blockstore.Hole, blockstore.Hole}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.Missing(ctx, tc.ids)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Missing = %v, want %v", shorts(got), shorts(tc.want))
			}
		})
	}
}

// ids gives the IDs of blocks.
func ids(bs ...blockstore.Block) []blockstore.ID {
	out := make([]blockstore.ID, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}

func shorts(ids []blockstore.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.Short()
	}
	return out
}

func (s *suite) testDelete(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	ctx := t.Context()
	bs := []blockstore.Block{
		NewBlock(RandomBytes(r, blockstore.DefaultBlockSize)),
		NewBlock(CompressibleBytes(r, blockstore.DefaultBlockSize)),
		NewBlock(RandomBytes(r, 10)),
	}
	absent := blockstore.Sum([]byte("absent"))
	put(t, st, bs...)
	if err := st.Delete(ctx, bs[0].ID, absent, blockstore.Hole, bs[2].ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, b := range []blockstore.Block{bs[0], bs[2]} {
		if _, err := st.Get(ctx, b.ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
			t.Errorf("Get deleted block: err = %v, want ErrNotFound", err)
		}
		if _, err := st.GetFrame(ctx, b.ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
			t.Errorf("GetFrame deleted block: err = %v, want ErrNotFound", err)
		}
	}
	checkGet(t, st, bs[1].ID, mustDecode(t, bs[1]))
	missing, err := st.Missing(ctx, ids(bs...))
	if err != nil {
		t.Fatal(err)
	}
	if want := ids(bs[0], bs[2]); !slices.Equal(missing, want) {
		t.Errorf("Missing after Delete = %v, want %v", shorts(missing), shorts(want))
	}
	if got := walkAll(t, st); len(got) != 1 || got[0] != bs[1].ID {
		t.Errorf("Walk after Delete = %v, want [%s]", shorts(got), bs[1].ID.Short())
	}
	if err := st.Delete(ctx, bs[0].ID); err != nil {
		t.Errorf("Delete again: %v", err)
	}
	if err := st.Delete(ctx); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
	// A deleted block can come back.
	put(t, st, bs[0])
	checkGet(t, st, bs[0].ID, mustDecode(t, bs[0]))
}

// walkAll returns the IDs Walk gives, sorted.
func walkAll(t *testing.T, st Store) []blockstore.ID {
	t.Helper()
	var got []blockstore.ID
	if err := st.Walk(t.Context(), func(id blockstore.ID) error {
		got = append(got, id)
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	sort.Slice(got, func(i, j int) bool { return bytes.Compare(got[i][:], got[j][:]) < 0 })
	return got
}

func (s *suite) testWalk(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	if got := walkAll(t, st); len(got) != 0 {
		t.Fatalf("Walk of an empty store: %d ids", len(got))
	}
	bs := smallBlocks(r, 50)
	put(t, st, bs...)
	want := ids(bs...)
	sort.Slice(want, func(i, j int) bool { return bytes.Compare(want[i][:], want[j][:]) < 0 })
	if got := walkAll(t, st); !slices.Equal(got, want) {
		t.Errorf("Walk = %d ids, want the %d put", len(got), len(want))
	}
	stop := errors.New("stop")
	calls := 0
	err := st.Walk(t.Context(), func(blockstore.ID) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk with fn failing: err = %v after %d calls, want fn's error after 1", err, calls)
	}
}

func (s *suite) testCorrupt(t *testing.T) {
	if s.opts.Corrupt == nil {
		t.Skip("no Options.Corrupt: this implementation cannot show that it detects tampered blocks")
	}
	r := rng(t)
	cases := []struct {
		name  string
		plain []byte
	}{
		{"raw", RandomBytes(r, blockstore.DefaultBlockSize)},
		{"zstd", CompressibleBytes(r, blockstore.DefaultBlockSize)},
		{"short", RandomBytes(r, 700)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := s.open(t)
			ctx := t.Context()
			b := NewBlock(c.plain)
			other := NewBlock(RandomBytes(r, 5000))
			put(t, st, b, other)
			s.opts.Corrupt(t, st, b.ID)
			prefix := []byte("prefix")
			got, err := st.Get(ctx, b.ID, slices.Clone(prefix))
			if !errors.Is(err, blockstore.ErrCorrupt) {
				t.Errorf("Get of a tampered block: err = %v, want ErrCorrupt", err)
			}
			if len(got) > len(prefix) {
				t.Errorf("Get of a tampered block appended %d bytes", len(got)-len(prefix))
			}
			got, err = st.GetFrame(ctx, b.ID, slices.Clone(prefix))
			if !errors.Is(err, blockstore.ErrCorrupt) {
				t.Errorf("GetFrame of a tampered block: err = %v, want ErrCorrupt", err)
			}
			if len(got) > len(prefix) {
				t.Errorf("GetFrame of a tampered block appended %d bytes", len(got)-len(prefix))
			}
			checkGet(t, st, other.ID, mustDecode(t, other))
		})
	}
}

func (s *suite) testMeta(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	val := []byte("v1")
	commit(t, st, blockstore.MetaOp{Key: "k", Value: val}, set("empty", ""))
	val[0] = 'X' // the caller's buffer is its own once CommitMeta returns
	got, err := st.GetMeta(ctx, "k")
	if err != nil || string(got) != "v1" {
		t.Fatalf("GetMeta = %q, %v; want v1", got, err)
	}
	got[0] = 'Y' // and so is what GetMeta returns
	if got, _ := st.GetMeta(ctx, "k"); string(got) != "v1" {
		t.Fatalf("GetMeta after scribbling on its result = %q, want v1", got)
	}
	got, err = st.GetMeta(ctx, "empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("GetMeta of an empty value = %q (nil: %v), %v; want a non-nil empty value", got, got == nil, err)
	}
	commit(t, st, set("k", "v2"))
	if got, _ := st.GetMeta(ctx, "k"); string(got) != "v2" {
		t.Errorf("GetMeta after overwrite = %q, want v2", got)
	}
	big := RandomBytes(rng(t), 1<<20)
	commit(t, st, blockstore.MetaOp{Key: "big", Value: big})
	if got, err := st.GetMeta(ctx, "big"); err != nil || !bytes.Equal(got, big) {
		t.Errorf("GetMeta of a 1 MiB value: %d bytes, %v", len(got), err)
	}
	commit(t, st) // no ops at all
}

func (s *suite) testMetaCheck(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	commit(t, st, set("present", "old"), set("empty", ""))
	tests := []struct {
		name string
		op   blockstore.MetaOp
		ok   bool
	}{
		{"absent as expected", blockstore.MetaOp{Key: "absent", Check: true, Old: nil}, true},
		{"absent, value expected", blockstore.MetaOp{Key: "absent", Check: true, Old: []byte("old")}, false},
		{"absent, empty value expected", blockstore.MetaOp{Key: "absent", Check: true, Old: []byte{}}, false},
		{"present as expected", blockstore.MetaOp{Key: "present", Check: true, Old: []byte("old")}, true},
		{"present, other value expected", blockstore.MetaOp{Key: "present", Check: true, Old: []byte("olx")}, false},
		{"present, prefix expected", blockstore.MetaOp{Key: "present", Check: true, Old: []byte("ol")}, false},
		{"present, absence expected", blockstore.MetaOp{Key: "present", Check: true, Old: nil}, false},
		{"empty as expected", blockstore.MetaOp{Key: "empty", Check: true, Old: []byte{}}, true},
		{"empty, absence expected", blockstore.MetaOp{Key: "empty", Check: true, Old: nil}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each op writes a marker key, so a success is visible.
			marker := fmt.Sprintf("marker%d", i)
			op := tc.op
			op.Value = nil
			if op.Key != "absent" {
				op.Value = op.Old // rewrite the same value, if any
			}
			err := st.CommitMeta(ctx, op, set(marker, "x"))
			_, merr := st.GetMeta(ctx, marker)
			if tc.ok {
				if err != nil {
					t.Fatalf("CommitMeta: %v, want success", err)
				}
				if merr != nil {
					t.Fatalf("after a successful commit: %v", merr)
				}
				return
			}
			if !errors.Is(err, blockstore.ErrConflict) {
				t.Fatalf("CommitMeta: err = %v, want ErrConflict", err)
			}
			if !errors.Is(merr, blockstore.ErrNotFound) {
				t.Fatalf("a failed commit applied another op: GetMeta(marker) err = %v", merr)
			}
		})
	}
}

func (s *suite) testCommitMetaAtomic(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	commit(t, st, set("a", "a0"), set("b", "b0"), set("c", "c0"))
	for _, failAt := range []int{0, 1, 3} {
		t.Run(fmt.Sprint("fail at op ", failAt), func(t *testing.T) {
			ops := []blockstore.MetaOp{
				set("a", "a1"),
				{Key: "b", Value: nil},
				set("new", "n1"),
				set("c", "c1"),
			}
			ops[failAt].Check = true
			ops[failAt].Old = []byte("not the value")
			err := st.CommitMeta(ctx, ops...)
			if !errors.Is(err, blockstore.ErrConflict) {
				t.Fatalf("CommitMeta: err = %v, want ErrConflict", err)
			}
			for k, want := range map[string]string{"a": "a0", "b": "b0", "c": "c0"} {
				if got, err := st.GetMeta(ctx, k); err != nil || string(got) != want {
					t.Errorf("after a failed commit %q = %q, %v; want %q", k, got, err, want)
				}
			}
			if _, err := st.GetMeta(ctx, "new"); !errors.Is(err, blockstore.ErrNotFound) {
				t.Errorf("after a failed commit a new key exists: %v", err)
			}
		})
	}
}

func (s *suite) testCommitMetaInOrder(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	commit(t, st,
		set("k", "1"),
		blockstore.MetaOp{Key: "k", Value: []byte("2"), Check: true, Old: []byte("1")},
		blockstore.MetaOp{Key: "gone", Value: []byte("x"), Check: true},
		blockstore.MetaOp{Key: "gone", Value: nil, Check: true, Old: []byte("x")},
		blockstore.MetaOp{Key: "gone", Value: nil, Check: true, Old: nil},
	)
	if got, err := st.GetMeta(ctx, "k"); err != nil || string(got) != "2" {
		t.Errorf("k = %q, %v; want 2", got, err)
	}
	if _, err := st.GetMeta(ctx, "gone"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("gone: err = %v, want ErrNotFound", err)
	}
	// A check that only holds before an earlier op of the same commit fails.
	err := st.CommitMeta(ctx, set("k", "3"), blockstore.MetaOp{Key: "k", Value: []byte("4"), Check: true, Old: []byte("2")})
	if !errors.Is(err, blockstore.ErrConflict) {
		t.Errorf("check against a value overwritten earlier in the commit: err = %v, want ErrConflict", err)
	}
	if got, _ := st.GetMeta(ctx, "k"); string(got) != "2" {
		t.Errorf("k = %q after a failed commit, want 2", got)
	}
}

func (s *suite) testCommitMetaDelete(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	commit(t, st, set("x", "1"), set("y", "2"))
	commit(t, st, blockstore.MetaOp{Key: "x"}, blockstore.MetaOp{Key: "never there"})
	if _, err := st.GetMeta(ctx, "x"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("GetMeta of a deleted key: err = %v, want ErrNotFound", err)
	}
	err := st.CommitMeta(ctx, blockstore.MetaOp{Key: "y", Check: true, Old: []byte("1")})
	if !errors.Is(err, blockstore.ErrConflict) {
		t.Errorf("checked delete with a wrong Old: err = %v, want ErrConflict", err)
	}
	commit(t, st, blockstore.MetaOp{Key: "y", Check: true, Old: []byte("2")})
	if _, err := st.GetMeta(ctx, "y"); !errors.Is(err, blockstore.ErrNotFound) {
		t.Errorf("GetMeta after a checked delete: err = %v, want ErrNotFound", err)
	}
	var keys []string
	if err := st.ListMeta(ctx, "", func(k string, _ []byte) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("ListMeta after deleting every key: %q", keys)
	}
}

// testCommitMetaConcurrent increments a counter by compare-and-swap from
// several goroutines: no increment may be lost.
func (s *suite) testCommitMetaConcurrent(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	const workers, each = 4, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				for {
					old, err := st.GetMeta(ctx, "counter")
					if errors.Is(err, blockstore.ErrNotFound) {
						old = nil
					} else if err != nil {
						t.Error(err)
						return
					}
					n := 0
					if old != nil {
						fmt.Sscan(string(old), &n)
					}
					err = st.CommitMeta(ctx, blockstore.MetaOp{
						Key: "counter", Value: []byte(fmt.Sprint(n + 1)), Check: true, Old: old,
					})
					if err == nil {
						break
					}
					if !errors.Is(err, blockstore.ErrConflict) {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	got, err := st.GetMeta(ctx, "counter")
	if want := fmt.Sprint(workers * each); err != nil || string(got) != want {
		t.Errorf("counter = %q, %v; want %s", got, err, want)
	}
}

type kv struct{ k, v string }

func listAll(t *testing.T, st Store, prefix string) []kv {
	t.Helper()
	var got []kv
	if err := st.ListMeta(t.Context(), prefix, func(k string, v []byte) error {
		got = append(got, kv{k, string(v)})
		return nil
	}); err != nil {
		t.Fatalf("ListMeta(%q): %v", prefix, err)
	}
	return got
}

func (s *suite) testListMeta(t *testing.T) {
	st := s.open(t)
	keys := []string{"b", "a/2", "a", "a/10", "a/1", "ab", "a\xff", "a\xff\xff", "c"}
	var ops []blockstore.MetaOp
	for _, k := range keys {
		ops = append(ops, set(k, "v"+k))
	}
	commit(t, st, ops...)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"a", "a/1", "a/10", "a/2", "ab", "a\xff", "a\xff\xff", "b", "c"}},
		{"a/", []string{"a/1", "a/10", "a/2"}},
		{"a/1", []string{"a/1", "a/10"}},
		{"a\xff", []string{"a\xff", "a\xff\xff"}},
		{"b", []string{"b"}},
		{"d", nil},
		{"a/3", nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.prefix), func(t *testing.T) {
			var want []kv
			for _, k := range tc.want {
				want = append(want, kv{k, "v" + k})
			}
			if got := listAll(t, st, tc.prefix); !slices.Equal(got, want) {
				t.Errorf("ListMeta(%q) = %q, want %q", tc.prefix, got, want)
			}
		})
	}
	stop := errors.New("stop")
	calls := 0
	err := st.ListMeta(t.Context(), "a", func(string, []byte) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ListMeta with fn failing: err = %v after %d calls, want fn's error after 1", err, calls)
	}
}

// testNamespaces checks that blocks and metadata do not see each other,
// even with metadata keys that look like block keys.
func (s *suite) testNamespaces(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	ctx := t.Context()
	bs := smallBlocks(r, 3)
	put(t, st, bs...)
	id := bs[0].ID
	tricky := []string{string(id[:]), "b" + string(id[:]), "m", "b", id.String()}
	var ops []blockstore.MetaOp
	for _, k := range tricky {
		ops = append(ops, set(k, "meta"))
	}
	commit(t, st, ops...)
	if got := listAll(t, st, ""); len(got) != len(tricky) {
		t.Errorf("ListMeta sees %d keys, want the %d metadata keys", len(got), len(tricky))
	}
	if got := walkAll(t, st); len(got) != len(bs) {
		t.Errorf("Walk sees %d ids, want the %d blocks", len(got), len(bs))
	}
	commit(t, st, blockstore.MetaOp{Key: "b" + string(id[:])}, blockstore.MetaOp{Key: string(id[:])})
	checkGet(t, st, id, mustDecode(t, bs[0]))
	if err := st.Delete(ctx, ids(bs...)...); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, st, ""); len(got) != len(tricky)-2 {
		t.Errorf("after deleting blocks ListMeta sees %d keys, want %d", len(got), len(tricky)-2)
	}
}

func (s *suite) testContextCancelled(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	b := NewBlock(RandomBytes(r, 1000))
	put(t, st, b)
	commit(t, st, set("k", "v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	nop := func(blockstore.ID) error { return nil }
	calls := map[string]func() error{
		"Get":        func() error { _, err := st.Get(ctx, b.ID, nil); return err },
		"GetFrame":   func() error { _, err := st.GetFrame(ctx, b.ID, nil); return err },
		"Put":        func() error { return st.Put(ctx, NewBlock(RandomBytes(r, 100))) },
		"Missing":    func() error { _, err := st.Missing(ctx, []blockstore.ID{b.ID}); return err },
		"Delete":     func() error { return st.Delete(ctx, b.ID) },
		"Walk":       func() error { return st.Walk(ctx, nop) },
		"GetMeta":    func() error { _, err := st.GetMeta(ctx, "k"); return err },
		"ListMeta":   func() error { return st.ListMeta(ctx, "", func(string, []byte) error { return nil }) },
		"CommitMeta": func() error { return st.CommitMeta(ctx, set("k", "changed")) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
	}
	// A commit refused for its context must not have been applied.
	if got, err := st.GetMeta(t.Context(), "k"); err != nil || string(got) != "v" {
		t.Errorf("after a cancelled CommitMeta k = %q, %v; want v", got, err)
	}
}

// testContextCancelledDuringLoop cancels the context from inside the
// callback of Walk and ListMeta: the loop must notice.
func (s *suite) testContextCancelledDuringLoop(t *testing.T) {
	r := rng(t)
	st := s.open(t)
	const n = 200
	put(t, st, smallBlocks(r, n)...)
	var ops []blockstore.MetaOp
	for i := range n {
		ops = append(ops, set(fmt.Sprintf("k%03d", i), "v"))
	}
	commit(t, st, ops...)

	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err := st.Walk(ctx, func(blockstore.ID) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Walk cancelled during the walk: err = %v after %d of %d calls, want context.Canceled", err, calls, n)
	}
	ctx, cancel = context.WithCancel(t.Context())
	calls = 0
	err = st.ListMeta(ctx, "", func(string, []byte) error { calls++; cancel(); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ListMeta cancelled during the listing: err = %v after %d of %d calls, want context.Canceled", err, calls, n)
	}
}

// testConcurrent runs Put, Get, GetFrame and Missing from several
// goroutines at once; run it with -race.
func (s *suite) testConcurrent(t *testing.T) {
	st := s.open(t)
	ctx := t.Context()
	r := rng(t)
	const workers, each = 4, 12
	shared := []blockstore.Block{
		NewBlock(CompressibleBytes(r, blockstore.DefaultBlockSize)),
		NewBlock(RandomBytes(r, blockstore.DefaultBlockSize)),
		NewBlock(RandomBytes(r, 777)),
	}
	own := make([][]blockstore.Block, workers)
	for w := range own {
		for i := range each {
			n := blockstore.DefaultBlockSize >> (i % 4)
			if i%2 == 0 {
				own[w] = append(own[w], NewBlock(RandomBytes(r, n)))
			} else {
				own[w] = append(own[w], NewBlock(CompressibleBytes(r, n)))
			}
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var buf []byte
			for i, b := range own[w] {
				if err := st.Put(ctx, b, shared[i%len(shared)]); err != nil {
					t.Error(err)
					return
				}
				for _, g := range []blockstore.Block{b, shared[i%len(shared)], own[(w+1)%workers][i]} {
					out, err := st.Get(ctx, g.ID, buf[:0])
					if errors.Is(err, blockstore.ErrNotFound) && g.ID == own[(w+1)%workers][i].ID {
						continue // the neighbour has not put it yet
					}
					if err != nil {
						t.Error(err)
						return
					}
					buf = out
					if blockstore.Sum(out) != g.ID {
						t.Errorf("Get %s returned other bytes", g.ID.Short())
						return
					}
				}
				if _, err := st.GetFrame(ctx, b.ID, nil); err != nil {
					t.Error(err)
					return
				}
			}
			missing, err := st.Missing(ctx, ids(own[w]...))
			if err != nil || len(missing) != 0 {
				t.Errorf("Missing after Put: %d missing, %v", len(missing), err)
			}
		})
	}
	wg.Wait()
	if got, want := len(walkAll(t, st)), len(shared)+workers*each; got != want {
		t.Errorf("Walk after concurrent puts: %d ids, want %d", got, want)
	}
}

func (s *suite) testClosed(t *testing.T) {
	st := s.open(t)
	b := NewBlock([]byte("block"))
	put(t, st, b)
	commit(t, st, set("k", "v"))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	calls := map[string]func() error{
		"Get":        func() error { _, err := st.Get(ctx, b.ID, nil); return err },
		"GetFrame":   func() error { _, err := st.GetFrame(ctx, b.ID, nil); return err },
		"Put":        func() error { return st.Put(ctx, NewBlock([]byte("other"))) },
		"Missing":    func() error { _, err := st.Missing(ctx, []blockstore.ID{b.ID}); return err },
		"Delete":     func() error { return st.Delete(ctx, b.ID) },
		"Walk":       func() error { return st.Walk(ctx, func(blockstore.ID) error { return nil }) },
		"GetMeta":    func() error { _, err := st.GetMeta(ctx, "k"); return err },
		"ListMeta":   func() error { return st.ListMeta(ctx, "", func(string, []byte) error { return nil }) },
		"CommitMeta": func() error { return st.CommitMeta(ctx, set("k", "w")) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, blockstore.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
	if err := st.Close(); err != nil && !errors.Is(err, blockstore.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}
