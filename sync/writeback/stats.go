package writeback

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts what a Writeback did since it started.
type Stats struct {
	// Leases counts lease events: "acquired" (a new epoch), "renewed",
	// "refused" (another workstation holds it), "offline" (the server
	// unreachable; this workstation, the last holder, goes on under its
	// epoch), "lost" (taken over: the changes went to a conflict clone).
	Leases map[string]int64
	// Commits counts the generations committed; UploadedBytes the bytes
	// of blocks uploaded for them.
	Commits, UploadedBytes int64
}

type stats struct {
	leases  sync.Map // string -> *atomic.Int64
	commits atomic.Int64
}

func (s *stats) lease(event string) {
	v, ok := s.leases.Load(event)
	if !ok {
		v, _ = s.leases.LoadOrStore(event, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// Stats returns the counts so far.
func (w *Writeback) Stats() Stats {
	st := Stats{Leases: make(map[string]int64), Commits: w.stats.commits.Load()}
	w.stats.leases.Range(func(k, v any) bool {
		st.Leases[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	w.mu.Lock()
	for _, c := range w.clones {
		st.UploadedBytes += c.sent.Load()
	}
	w.mu.Unlock()
	return st
}

// markChanging records when a clone first changed since its last seal:
// the oldest write the next seal captures. The caller holds c.mu.
func (c *cloneWB) markChanging() {
	if c.changingSince.IsZero() {
		c.changingSince = time.Now()
	}
}

// unsyncedSince is when the oldest change not on the server was made,
// for a status whose Pending and Unsealed are set; zero when not known
// (changes a crash left, until a seal in this process sees them). The
// caller holds c.mu.
func (c *cloneWB) unsyncedSince(s *Status, outboxModTime time.Time) time.Time {
	var t time.Time
	older := func(u time.Time) {
		if !u.IsZero() && (t.IsZero() || u.Before(t)) {
			t = u
		}
	}
	if s.Pending {
		if c.pendingSince.IsZero() {
			older(outboxModTime) // sealed before this process: the seal's time
		}
		older(c.pendingSince)
	}
	if s.Unsealed {
		older(c.changingSince)
	}
	return t
}
