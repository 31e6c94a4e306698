package etcdmeta

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dvfs-project/dvfs/blockstore"
)

// events collects what a watch tells, for a test to wait on.
type events struct {
	t  *testing.T
	ch chan blockstore.MetaEvent
}

// expect waits for the next n events and returns them as "KIND key=value"
// lines, sorted (the order within one commit is etcd's).
func (e events) expect(n int) []string {
	e.t.Helper()
	var out []string
	timeout := time.After(60 * time.Second)
	for len(out) < n {
		select {
		case ev := <-e.ch:
			kind := "put"
			switch {
			case ev.Initial:
				kind = "initial"
			case ev.Resync:
				kind = "resync"
			}
			if ev.Deleted {
				kind += "-deleted"
			}
			out = append(out, fmt.Sprintf("%s %s=%s", kind, ev.Key, ev.Value))
		case <-timeout:
			e.t.Fatalf("after 60 s, %d events of %d: %q", len(out), n, out)
		}
	}
	slices.Sort(out)
	return out
}

func (e events) none() {
	e.t.Helper()
	select {
	case ev := <-e.ch:
		e.t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func want(t *testing.T, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestWatch watches a prefix through a client that knows one member only:
// it sees the keys there were, then every commit's changes under the
// prefix (none outside it). That member is killed with SIGKILL; while
// the watch has no member, commits go on through the other two and the
// cluster compacts its history past them, so when the client is given the
// other members the watch cannot resume where it stopped: it lists again
// and tells of the gap's puts and deletes (Resync), then of commits after.
func TestWatch(t *testing.T) {
	c := startCluster(t)
	w := openT(t, c, Config{})
	ctx := t.Context()
	commit := func(ops ...blockstore.MetaOp) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			err := w.CommitMeta(ctx, ops...) // puts and deletes: safe to repeat
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("commit for 60 s: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put := func(k, v string) blockstore.MetaOp { return blockstore.MetaOp{Key: k, Value: []byte(v)} }
	del := func(k string) blockstore.MetaOp { return blockstore.MetaOp{Key: k} }
	commit(put("k/0", "a"), put("k/1", "b"), put("kx", "outside"))

	r, err := Open(ctx, Config{Endpoints: []string{c.Members[0].ClientAddr}, Prefix: w.cfg.Prefix, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ev := events{t: t, ch: make(chan blockstore.MetaEvent, 100)}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.WatchMeta(wctx, "k/", func(e blockstore.MetaEvent) error { ev.ch <- e; return nil })
	}()
	want(t, ev.expect(2), "initial k/0=", "initial k/1=")

	commit(put("k/2", "c"), del("k/0"), put("kx", "still outside"))
	want(t, ev.expect(2), "put k/2=c", "put-deleted k/0=")
	commit(put("k/1", "b2"))
	want(t, ev.expect(1), "put k/1=b2")

	c.Members[0].Kill()
	commit(put("k/3", "d"), del("k/1"))
	commit(put("k/2", "c2"))
	resp, err := w.cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	ev.none()
	r.cli.SetEndpoints(c.Members[1].ClientAddr, c.Members[2].ClientAddr)
	want(t, ev.expect(3), "resync k/2=c2", "resync k/3=d", "resync-deleted k/1=")

	commit(put("k/4", "e"))
	want(t, ev.expect(1), "put k/4=e")
	ev.none()
	cancel()
	if err := <-done; err == nil || ctx.Err() != nil {
		t.Fatalf("WatchMeta after its context ended: %v", err)
	}
}
