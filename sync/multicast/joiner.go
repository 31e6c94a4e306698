package multicast

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// JoinerConfig configures a workstation's joiner.
type JoinerConfig struct {
	// Sessions lists the server's sessions (sync/client.Client).
	Sessions func(ctx context.Context) ([]api.MulticastSession, error)
	// Manifest returns a template version, verified against the pinned
	// server key (the workstation's catalog).
	Manifest func(ctx context.Context, name string, version uint64) (*manifest.Manifest, error)
	// Store receives the blocks (the workstation's cache).
	Store BlockStore
	// Unicast fetches what a session did not deliver.
	Unicast Fetcher
	// FillStore receives the blocks of the background fill; nil: Store.
	FillStore BlockStore
	// Interface receives the multicast; nil lets the kernel choose.
	Interface *net.Interface
	// Logger receives the joiner's log.
	Logger *slog.Logger
	// FillRate bounds the background unicast fill (bytes of block frames
	// per second) of template versions whose session this workstation
	// missed; 0 means DefaultFillRate, negative turns the fill off.
	FillRate int64
}

// DefaultFillRate is the background unicast fill's rate: a few percent of
// a 1 Gbit/s server link, so that a handful of workstations that missed a
// session do not become the restore storm multicast exists to avoid.
const DefaultFillRate = 8 << 20

// fillBatch is how many blocks a background fill asks for at once;
// fillRetryAfter is the pause after a failed fill.
const (
	fillBatch      = 16
	fillRetryAfter = time.Minute
)

// JoinProgress is what dvfs status shows of a session this workstation
// joined.
type JoinProgress struct {
	Session  uint32 `json:"session"`
	Template string `json:"template"`
	Version  uint64 `json:"version"`
	Stored   int64  `json:"stored"`
	Needed   int64  `json:"needed"`
	State    string `json:"state"` // receiving, done, failed
	Error    string `json:"error,omitempty"`
}

// Joiner finds the server's multicast sessions and joins each one whose
// template version the workstation lacks blocks of, filling the cache in
// the background.
type Joiner struct {
	cfg  JoinerConfig
	log  *slog.Logger
	mu   sync.Mutex
	seen map[uint32]*joined
	// The background unicast fill of missed sessions: one at a time, and
	// stopped while a session is received. filled holds the template
	// versions it completed (or found complete).
	fill   *filling
	filled map[string]bool
	// fillRetry: after a failed fill, the next waits until then.
	fillRetry time.Time
	// For Stats: the sessions ended by outcome, the sum of their
	// receivers' counters.
	ended    map[string]int
	received ReceiverStats
}

// filling is a running background fill.
type filling struct {
	ref    string // template@version
	cancel context.CancelFunc
	done   chan struct{}
	prog   JoinProgress
}

type joined struct {
	prog JoinProgress
	rcv  *Receiver
}

// NewJoiner returns a joiner; Run joins.
func NewJoiner(cfg JoinerConfig) *Joiner {
	j := &Joiner{cfg: cfg, log: cfg.Logger, seen: make(map[uint32]*joined), filled: make(map[string]bool),
		ended: make(map[string]int)}
	if j.cfg.FillRate == 0 {
		j.cfg.FillRate = DefaultFillRate
	}
	if j.cfg.FillStore == nil {
		j.cfg.FillStore = j.cfg.Store
	}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	return j
}

// Run polls for sessions every PollInterval until ctx ends; sessions are
// received one at a time.
func (j *Joiner) Run(ctx context.Context) {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		list, err := j.cfg.Sessions(ctx)
		if err == nil {
			for _, s := range list {
				if live(s) && j.isNew(s.ID) {
					// Multicast first: a fill by unicast would take
					// the server's link from the session.
					j.stopFill()
					j.join(ctx, s)
				}
			}
			j.startFill(ctx, list)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			j.stopFill()
			return
		}
	}
}

func live(s api.MulticastSession) bool { return s.State == "queued" || s.State == "sending" }

// startFill starts filling, by unicast and at FillRate, the template
// version of a session that ended without this workstation having all of
// it (it was off, or joined too late, or its receive failed), unless a
// fill runs or a session is live (it is joined instead).
func (j *Joiner) startFill(ctx context.Context, list []api.MulticastSession) {
	if j.cfg.FillRate < 0 || j.cfg.Unicast == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fill != nil {
		select {
		case <-j.fill.done:
		default:
			return // one at a time
		}
	}
	if time.Now().Before(j.fillRetry) {
		return
	}
	for _, s := range list {
		if live(s) {
			return
		}
	}
	// The newest ended session first: its version is what the lab runs.
	for i := len(list) - 1; i >= 0; i-- {
		s := list[i]
		ref := fmt.Sprintf("%s@%d", s.Template, s.Version)
		if j.filled[ref] {
			continue
		}
		if jd := j.seen[s.ID]; jd != nil && jd.prog.State == "done" {
			continue // received
		}
		fctx, cancel := context.WithCancel(ctx)
		f := &filling{ref: ref, cancel: cancel, done: make(chan struct{}),
			prog: JoinProgress{Session: s.ID, Template: s.Template, Version: s.Version, State: "filling by unicast"}}
		j.fill = f
		go j.runFill(fctx, f, s)
		return
	}
}

// stopFill stops a running fill and waits for it; what it stored stays.
func (j *Joiner) stopFill() {
	j.mu.Lock()
	f := j.fill
	j.mu.Unlock()
	if f != nil {
		f.cancel()
		<-f.done
	}
}

// runFill fetches the blocks of s's template version the store lacks.
func (j *Joiner) runFill(ctx context.Context, f *filling, s api.MulticastSession) {
	defer close(f.done)
	err := j.fillVersion(ctx, f, s)
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case err == nil:
		j.filled[f.ref] = true
		f.prog.State = "done (filled by unicast)"
	case ctx.Err() != nil:
		f.prog.State = "fill paused"
	default:
		f.prog.State, f.prog.Error = "fill failed", err.Error()
		j.fillRetry = time.Now().Add(fillRetryAfter)
		j.log.Warn("background fill of a missed multicast session failed; it is tried again", "template", f.ref, "in", fillRetryAfter, "err", err)
	}
}

func (j *Joiner) fillVersion(ctx context.Context, f *filling, s api.MulticastSession) error {
	m, err := j.cfg.Manifest(ctx, s.Template, s.Version)
	if err != nil {
		return err
	}
	missing, err := j.cfg.FillStore.Missing(ctx, slices.Collect(m.BlockIDs()))
	if err != nil || len(missing) == 0 {
		return err
	}
	j.mu.Lock()
	f.prog.Needed = int64(len(missing))
	j.mu.Unlock()
	j.log.Info("filling a template by unicast in the background: its multicast session was missed",
		"template", f.ref, "session", s.ID, "missing_blocks", len(missing), "rate", j.cfg.FillRate)
	// Frames are at most a block and its header; the burst holds a batch.
	burst := int(max(j.cfg.FillRate, fillBatch*(int64(m.BlockSize)+1024)))
	lim := rate.NewLimiter(rate.Limit(j.cfg.FillRate), burst)
	var blocks []blockstore.Block
	for len(missing) > 0 {
		n := min(len(missing), fillBatch)
		blocks = blocks[:0]
		var size int
		// Nobody waits for these blocks: the server answers readers first.
		err := j.cfg.Unicast.FetchFrames(api.WithBackground(ctx), missing[:n], func(id blockstore.ID, frame, _ []byte) error {
			blocks = append(blocks, blockstore.Block{ID: id, Frame: bytes.Clone(frame)})
			size += len(frame)
			return nil
		})
		if err != nil {
			return err
		}
		if err := j.cfg.FillStore.Put(ctx, blocks...); err != nil {
			return err
		}
		missing = missing[n:]
		j.mu.Lock()
		f.prog.Stored += int64(n)
		j.mu.Unlock()
		if err := lim.WaitN(ctx, min(size, burst)); err != nil {
			return err
		}
	}
	j.log.Info("template filled by unicast", "template", f.ref, "blocks", f.prog.Needed)
	return nil
}

func (j *Joiner) isNew(id uint32) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	_, ok := j.seen[id]
	return !ok
}

func (j *Joiner) join(ctx context.Context, s api.MulticastSession) {
	jd := &joined{prog: JoinProgress{Session: s.ID, Template: s.Template, Version: s.Version, State: "receiving"}}
	j.mu.Lock()
	j.seen[s.ID] = jd
	j.mu.Unlock()
	finish := func(err error) {
		j.mu.Lock()
		defer j.mu.Unlock()
		if jd.rcv != nil {
			jd.prog.Stored, jd.prog.Needed = jd.rcv.Progress()
		}
		jd.prog.State = "done"
		if err != nil {
			jd.prog.State, jd.prog.Error = "failed", err.Error()
			j.log.Warn("multicast session not received", "session", s.ID, "template", s.Template, "err", err)
		}
		j.ended[jd.prog.State]++
	}
	m, err := j.cfg.Manifest(ctx, s.Template, s.Version)
	if err != nil {
		finish(err)
		return
	}
	missing, err := j.cfg.Store.Missing(ctx, slices.Collect(m.BlockIDs()))
	if err != nil {
		finish(err)
		return
	}
	if len(missing) == 0 {
		finish(nil) // nothing to fetch: the sender needs no word from us
		return
	}
	group, err := net.ResolveUDPAddr("udp4", s.Group)
	if err != nil {
		finish(fmt.Errorf("group %q: %w", s.Group, err))
		return
	}
	conn, err := ListenGroup(group, j.cfg.Interface)
	if err != nil {
		finish(err)
		return
	}
	defer conn.Close()
	rcv, err := NewReceiver(ReceiverConfig{
		Conn: conn, Manifest: m, Store: j.cfg.Store, Unicast: j.cfg.Unicast, Key: s.Key, Session: s.ID,
		JoinTimeout: 2 * PollInterval, Logger: j.log,
	})
	if err != nil {
		finish(err)
		return
	}
	j.mu.Lock()
	jd.rcv = rcv
	j.mu.Unlock()
	j.log.Info("joining multicast session", "session", s.ID, "template", s.Template, "version", s.Version, "missing_blocks", len(missing))
	st, err := rcv.Run(ctx)
	j.mu.Lock()
	j.received.add(st)
	j.mu.Unlock()
	if err == nil {
		j.log.Info("multicast session received", "session", s.ID, "template", s.Template, "stats", fmt.Sprintf("%+v", st))
	} else if errors.Is(err, context.Canceled) {
		return
	}
	finish(err)
}

// Progress lists the sessions joined so far.
func (j *Joiner) Progress() []JoinProgress {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]JoinProgress, 0, len(j.seen))
	for _, jd := range j.seen {
		p := jd.prog
		if jd.rcv != nil && p.State == "receiving" {
			p.Stored, p.Needed = jd.rcv.Progress()
		}
		out = append(out, p)
	}
	if j.fill != nil {
		out = append(out, j.fill.prog)
	}
	slices.SortFunc(out, func(a, b JoinProgress) int { return cmp.Compare(a.Session, b.Session) })
	return out
}
