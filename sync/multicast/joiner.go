package multicast

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

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
	// Interface receives the multicast; nil lets the kernel choose.
	Interface *net.Interface
	// Logger receives the joiner's log.
	Logger *slog.Logger
}

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
}

type joined struct {
	prog JoinProgress
	rcv  *Receiver
}

// NewJoiner returns a joiner; Run joins.
func NewJoiner(cfg JoinerConfig) *Joiner {
	j := &Joiner{cfg: cfg, log: cfg.Logger, seen: make(map[uint32]*joined)}
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
				if (s.State == "queued" || s.State == "sending") && j.isNew(s.ID) {
					j.join(ctx, s)
				}
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
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
	slices.SortFunc(out, func(a, b JoinProgress) int { return cmp.Compare(a.Session, b.Session) })
	return out
}
