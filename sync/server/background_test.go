package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/server"
)

// uploadRandom stores n blocks of 64 KiB of random bytes (their frames
// as large as the blocks) and returns their IDs and bytes.
func uploadRandom(t *testing.T, e *env, n int) ([]blockstore.ID, [][]byte) {
	t.Helper()
	var ids []blockstore.ID
	var plains [][]byte
	var batch []byte
	for range n {
		p := make([]byte, 64<<10)
		rand.Read(p)
		id := blockstore.Sum(p)
		ids, plains = append(ids, id), append(plains, p)
		batch = api.AppendBlock(batch, id, blockstore.Encode(nil, p))
		if len(batch) > 8<<20 {
			if err := e.admin.Upload(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		if err := e.admin.Upload(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	e.settle(t)
	return ids, plains
}

// fetchCounting fetches ids in the background, counting the blocks that
// arrive, until ctx ends; done gets the outcome.
func fetchCounting(e *env, ctx context.Context, ids []blockstore.ID, got *atomic.Int64, done chan<- error) {
	go func() {
		done <- e.admin.Fetch(api.WithBackground(ctx), ids, func(blockstore.ID, []byte) error {
			got.Add(1)
			return nil
		})
	}()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after a minute", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Background fetches share Limits.BackgroundRate, are answered
// Limits.BackgroundFetches at a time, and a reader's fetch is answered
// whole while they wait.
func TestBackgroundFetchesWaitForTurnAndRate(t *testing.T) {
	// 1 KiB/s: after the limiter's first 256 KiB a background fetch
	// waits minutes for more.
	e := newServerEnv(t, memstore.New(), server.Config{Limits: server.Limits{BackgroundRate: 1 << 10, BackgroundFetches: 1}})
	ids, plains := uploadRandom(t, e, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var gotA, gotB atomic.Int64
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	fetchCounting(e, ctx, ids[:8], &gotA, doneA)
	// The first 256 KiB go out at once: three whole blocks of 64 KiB
	// and their headers.
	waitFor(t, "the first background blocks", func() bool { return gotA.Load() == 3 })
	fetchCounting(e, ctx, ids[8:], &gotB, doneB)
	waitFor(t, "the second background fetch to queue", func() bool { return e.h.Background().Fetches == 1 })

	// A reader's fetch of every block is answered whole meanwhile.
	n := 0
	if err := e.admin.Fetch(context.Background(), ids, func(id blockstore.ID, p []byte) error {
		if id != ids[n] || !bytes.Equal(p, plains[n]) {
			t.Errorf("block %d: wrong bytes", n)
		}
		n++
		return nil
	}); err != nil || n != len(ids) {
		t.Fatalf("reader's fetch: %d of %d blocks, %v", n, len(ids), err)
	}
	if a, b := gotA.Load(), gotB.Load(); a != 3 || b != 0 {
		t.Fatalf("background fetches got %d and %d blocks, want 3 (the burst) and 0 (waiting its turn)", a, b)
	}
	st := e.h.Background()
	if st.Fetches != 1 || st.Bytes < 192<<10 || st.Bytes > 256<<10 {
		t.Fatalf("background stats %+v: want 1 fetch given a turn and one burst of bytes", st)
	}
	cancel()
	for _, done := range []chan error{doneA, doneB} {
		if err := <-done; err == nil {
			t.Fatal("a background fetch cut off by its client ended without an error")
		}
	}
}

// A background fetch sends nothing while a reader's fetch is being
// answered, and goes on when it ends.
func TestBackgroundFetchPausesForReaders(t *testing.T) {
	e := newServerEnv(t, memstore.New(), server.Config{Limits: server.Limits{BackgroundRate: 1 << 30}})
	// 32 MiB: more than the loopback socket buffers hold, so the
	// server's answer to a reader that stops reading stays in flight.
	ids, plains := uploadRandom(t, e, 512)
	ctx := context.Background()

	held, release := make(chan struct{}), make(chan struct{})
	readerDone := make(chan error, 1)
	go func() {
		first := true
		readerDone <- e.admin.Fetch(ctx, ids, func(blockstore.ID, []byte) error {
			if first {
				first = false
				close(held)
				<-release
			}
			return nil
		})
	}()
	<-held

	var got atomic.Int64
	bgDone := make(chan error, 1)
	fetchCounting(e, ctx, ids[:4], &got, bgDone)
	waitFor(t, "the background fetch to pause", func() bool { return e.h.Background().Pauses == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := got.Load(); n != 0 {
		t.Fatalf("background fetch got %d blocks while a reader's fetch was being answered", n)
	}
	close(release)
	if err := <-readerDone; err != nil {
		t.Fatalf("reader's fetch: %v", err)
	}
	if err := <-bgDone; err != nil || got.Load() != 4 {
		t.Fatalf("background fetch after the reader: %d of 4 blocks, %v", got.Load(), err)
	}
	_ = plains
}
