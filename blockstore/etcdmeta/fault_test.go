package etcdmeta

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// TestMemberKilled kills the leader of the three members with SIGKILL
// while workers run compare-and-swap commits, and checks that every
// acknowledged commit is there, that no commit is half-applied, and that
// commits go on with the two members left.
//
// Each commit of worker w moves its counter c/w from n to n+1 and the
// shared counter from s to s+1, and records rec/w/n+1 and srec/s+1 =
// "w/n+1": all five keys change together or not at all.
func TestMemberKilled(t *testing.T) {
	c := startCluster(t)
	s := openT(t, c, Config{Timeout: 10 * time.Second})
	ctx := t.Context()

	const workers, before, after = 4, 20, 20
	type ack struct{ n, shared uint64 }
	var (
		killed  atomic.Bool
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		mu      sync.Mutex
		acks    = make([][]ack, workers)
		nAfter  = make([]int, workers)
		unknown atomic.Int64 // commits whose outcome the worker had to read back
	)
	encode := func(n uint64) []byte {
		if n == 0 {
			return nil
		}
		return []byte(strconv.FormatUint(n, 10))
	}
	// read returns the counter at key, retrying while the cluster
	// elects a new leader.
	read := func(key string) (uint64, error) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			v, err := s.GetMeta(ctx, key)
			switch {
			case errors.Is(err, blockstore.ErrNotFound):
				return 0, nil
			case err == nil:
				return strconv.ParseUint(string(v), 10, 64)
			case time.Now().After(deadline):
				return 0, fmt.Errorf("read %s for 60s: %w", key, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			self := fmt.Sprintf("c/%d", w)
			var n, shared uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := s.CommitMeta(ctx,
					blockstore.MetaOp{Key: self, Value: encode(n + 1), Check: true, Old: encode(n)},
					blockstore.MetaOp{Key: "shared", Value: encode(shared + 1), Check: true, Old: encode(shared)},
					blockstore.MetaOp{Key: fmt.Sprintf("rec/%d/%08d", w, n+1), Value: []byte("x")},
					blockstore.MetaOp{Key: fmt.Sprintf("srec/%08d", shared+1), Value: fmt.Appendf(nil, "%d/%d", w, n+1)},
				)
				if err == nil {
					mu.Lock()
					acks[w] = append(acks[w], ack{n + 1, shared + 1})
					if killed.Load() {
						nAfter[w]++
					}
					mu.Unlock()
					n++
					shared++
					continue
				}
				if !errors.Is(err, blockstore.ErrConflict) {
					unknown.Add(1)
					t.Logf("worker %d: %v", w, err)
				}
				// Another worker moved the shared counter, or the outcome
				// is unknown: read both back.
				if n, err = read(self); err != nil {
					errs <- err
					return
				}
				if shared, err = read("shared"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	waitAcks := func(what string, enough func(w int) bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			ok := true
			for w := range workers {
				ok = ok && enough(w)
			}
			mu.Unlock()
			if ok {
				return
			}
			select {
			case err := <-errs:
				close(stop)
				wg.Wait()
				t.Fatal(err)
			default:
			}
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("workers have not %s after 2 minutes: %v", what, nAfter)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAcks("committed before the kill", func(w int) bool { return len(acks[w]) >= before })

	leader := -1
	for i, m := range c.Members {
		st, err := s.cli.Status(ctx, m.ClientAddr)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.MemberId == st.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no member says it leads")
	}
	killed.Store(true)
	c.Members[leader].Kill()
	t.Logf("killed the leader, %s", c.Members[leader].Name)

	waitAcks("committed after the kill", func(w int) bool { return nAfter[w] >= after })
	close(stop)
	wg.Wait()
	t.Logf("commits with an unknown outcome, read back: %d", unknown.Load())

	// What is there: every counter, every record.
	recs := map[string]bool{}
	srecs := map[uint64]string{}
	if err := s.ListMeta(ctx, "rec/", func(k string, _ []byte) error { recs[k] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.ListMeta(ctx, "srec/", func(k string, v []byte) error {
		i, err := strconv.ParseUint(k[len("srec/"):], 10, 64)
		srecs[i] = string(v)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	shared, err := read("shared")
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for w := range workers {
		n, err := read(fmt.Sprintf("c/%d", w))
		if err != nil {
			t.Fatal(err)
		}
		sum += n
		for i := uint64(1); i <= n+1; i++ {
			key := fmt.Sprintf("rec/%d/%08d", w, i)
			if recs[key] != (i <= n) {
				t.Errorf("worker %d at %d: record %s present %v", w, n, key, recs[key])
			}
		}
		for _, a := range acks[w] {
			if a.n > n || srecs[a.shared] != fmt.Sprintf("%d/%d", w, a.n) {
				t.Errorf("acknowledged commit %d of worker %d (shared %d) lost: counter %d, srec %q", a.n, w, a.shared, n, srecs[a.shared])
			}
		}
	}
	// Each commit moved one worker's counter and the shared one.
	if sum != shared || uint64(len(srecs)) != shared || uint64(len(recs)) != shared {
		t.Errorf("shared counter %d, workers' counters sum to %d, %d shared records, %d records", shared, sum, len(srecs), len(recs))
	}
	for i := uint64(1); i <= shared; i++ {
		var w, n int
		if _, err := fmt.Sscanf(srecs[i], "%d/%d", &w, &n); err != nil || !recs[fmt.Sprintf("rec/%d/%08d", w, n)] {
			t.Errorf("shared record %d = %q has no matching worker record", i, srecs[i])
		}
	}
}
