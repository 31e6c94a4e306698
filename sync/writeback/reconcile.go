package writeback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// BaseManifest is what the filesystem's catalog should present as clone
// name's committed tree: the generation this workstation's overlay started
// from (its own later commits are already in the overlay), or, for a clone
// not seen here before, the server's latest (from latest), which becomes
// the overlay's base.
func (w *Writeback) BaseManifest(ctx context.Context, name string, latest func() (*manifest.Manifest, error)) (*manifest.Manifest, error) {
	c := w.clone(name)
	if err := c.load(ctx, latest); err != nil {
		return nil, err
	}
	return c.base, nil
}

// Reconcile runs before the mount serves: for each clone with a local
// overlay, it checks the server. Where another workstation committed newer
// generations, the overlay is out of date: whatever it holds that the last
// generation committed from here does not (changes written while offline,
// or fsynced just before a crash) is saved as a conflict clone, and the
// overlay is dropped, so the clone opens as the server has it. A clone the
// server no longer has is dropped likewise. An unreachable server leaves
// everything as it is.
func (w *Writeback) Reconcile(ctx context.Context) error {
	var names []string
	err := w.cfg.Store.ListMeta(ctx, "wb/", func(k string, _ []byte) error {
		if name, ok := strings.CutSuffix(strings.TrimPrefix(k, "wb/"), "/state"); ok {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if err := w.reconcile(ctx, name); err != nil {
			errs = append(errs, fmt.Errorf("clone %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (w *Writeback) reconcile(ctx context.Context, name string) (err error) {
	c := w.clone(name)
	if err := c.load(ctx, nil); err != nil {
		return err
	}
	info, err := w.cfg.Server.Clone(ctx, name)
	gone := false
	if err != nil {
		var se interface{ StatusCode() int }
		if !errors.As(err, &se) || se.StatusCode() != 404 {
			w.log.Warn("server unreachable; keeping the local overlay as it is", "clone", name, "err", err)
			return nil
		}
		gone = true
	}
	if !gone && info.Generation > c.committedGen() {
		// A commit may have reached the server just before a crash that
		// kept it from being recorded here: that generation is ours.
		if err := c.adoptPending(ctx); err != nil {
			return err
		}
	}
	c.mu.Lock()
	st := c.st
	c.mu.Unlock()
	if !gone && info.Generation == st.Committed && !st.Lost {
		// Up to date: the overlay is the latest generation plus local
		// changes; sync what a crash left behind, in the background.
		c.poke()
		return nil
	}
	s, err := c.seal(ctx)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	defer func() {
		if err != nil {
			// The seal cleared marks of blocks whose only copy is its
			// file: the next seal reads every block afresh.
			c.known = nil
			w.outbox.remove(s.file)
		}
	}()
	m := s.m
	committed, err := getManifest(ctx, w.cfg.Store, key(name, "committed"))
	if err != nil {
		return err
	}
	if !sameTree(m, committed) {
		if err := c.upload(ctx, m, s.file); err != nil {
			return err
		}
		conflict, err := w.saveConflict(ctx, name, m, st.Template, st.TemplateVersion)
		if err != nil {
			return fmt.Errorf("saving local changes: %w", err)
		}
		w.log.Warn("clone changed elsewhere; this workstation's unsynced changes were saved as a new clone",
			"clone", name, "conflict_clone", conflict)
	}
	if err := w.cfg.Overlay.Drop(ctx, name); err != nil {
		return err
	}
	if err := w.outbox.remove(s.file); err != nil {
		return err
	}
	var p pending
	if has, _ := getJSON(ctx, w.cfg.Store, key(name, "pending"), &p); has {
		if err := c.dropOutbox(ctx, &p); err != nil {
			return err
		}
	}
	ops := []blockstore.MetaOp{{Key: key(name, "state")}, {Key: key(name, "base")}, {Key: key(name, "committed")}, {Key: key(name, "pending")}}
	c.pendingWritten()
	if err := w.cfg.Store.CommitMeta(ctx, ops...); err != nil {
		return err
	}
	w.forget(name)
	return nil
}

// forget stops a clone's loop and drops it from memory.
func (w *Writeback) forget(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clones[name]; c != nil {
		// Its loop ends, and it saves nothing more: its state is gone
		// (a new entry is made on next use).
		c.mu.Lock()
		c.loaded = false
		c.mu.Unlock()
		close(c.dropped)
	}
	delete(w.clones, name)
}

// Status is what dvfs status shows of a clone.
type Status struct {
	Clone         string
	Generation    uint64 // latest generation committed from here
	Pending       bool   // a sealed generation awaits upload
	PendingBlocks int    // its blocks in the outbox
	PendingBytes  int64  // the size of its outbox file
	// Unsealed: the clone changed since its last seal (or no seal has
	// checked it since the mount started).
	Unsealed bool
	// Stalled is why the last attempt to sync failed (empty when it
	// worked), and StalledSince when the failures began.
	Stalled      string    `json:",omitempty"`
	StalledSince time.Time `json:",omitzero"`
	// Synced: everything written to the clone here is on the server.
	Synced   bool
	Lease    string // holder and expiry, or why writes are refused
	Conflict string // the conflict clone, after a takeover
	// UnsyncedSince is when the oldest change not on the server yet was
	// made (zero when synced, or not known: changes a crash left, until
	// a seal sees them).
	UnsyncedSince time.Time `json:",omitzero"`
}

// Status reports every clone the writeback knows.
func (w *Writeback) Status(ctx context.Context) []Status {
	w.mu.Lock()
	cs := make([]*cloneWB, 0, len(w.clones))
	for _, c := range w.clones {
		cs = append(cs, c)
	}
	w.mu.Unlock()
	var out []Status
	for _, c := range cs {
		c.mu.Lock()
		s := Status{Clone: c.name, Generation: c.st.Committed, Conflict: c.st.ConflictClone}
		switch {
		case c.lease.Epoch != 0 && c.lease.Expires.IsZero():
			s.Lease = fmt.Sprintf("last held by this workstation (epoch %d); not renewed yet (server unreachable?)", c.lease.Epoch)
		case c.lease.Epoch != 0:
			s.Lease = fmt.Sprintf("held by this workstation (epoch %d) until %s", c.lease.Epoch, c.lease.Expires.Local().Format(time.TimeOnly))
		case c.holdErr != nil:
			s.Lease = c.holdErr.Error()
		default:
			s.Lease = "not taken (no writes yet)"
		}
		c.mu.Unlock()
		p, has := c.pendingSummary(ctx)
		if has {
			s.Pending, s.PendingBlocks = true, p.Blocks+len(p.Outbox)
		}
		c.syncStatus(&s, p.OutboxFile)
		out = append(out, s)
	}
	return out
}

func (c *cloneWB) committedGen() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Committed
}

// adoptPending recognises the pending generation on the server: when the
// generation after the last one recorded here holds exactly the pending
// tree, the commit went through before a crash, and it is recorded now.
func (c *cloneWB) adoptPending(ctx context.Context) error {
	var p pending
	has, err := getJSON(ctx, c.w.cfg.Store, key(c.name, "pending"), &p)
	if err != nil || !has {
		return err
	}
	if p.Parent != c.committedGen() {
		return nil
	}
	theirs, err := c.ourNext(ctx, &p)
	if err != nil || theirs == nil {
		return nil // not ours (or not there): the caller treats it as changed elsewhere
	}
	return c.adopt(ctx, &p, theirs)
}

// ourNext returns the server's generation after p's parent when it holds
// exactly p's tree: a commit of p that went through. Nil when that
// generation holds another tree or does not exist.
func (c *cloneWB) ourNext(ctx context.Context, p *pending) (*manifest.Manifest, error) {
	mine, err := manifest.Unmarshal(p.Manifest)
	if err != nil {
		return nil, err
	}
	theirs, err := c.w.cfg.Server.GenerationManifest(ctx, c.name, p.Parent+1)
	if isGone(err) {
		return nil, nil
	}
	if err != nil || !sameTree(mine, theirs) {
		return nil, err
	}
	return theirs, nil
}

// adopt records theirs, the server's generation holding p's tree, as
// committed.
func (c *cloneWB) adopt(ctx context.Context, p *pending, theirs *manifest.Manifest) error {
	c.mu.Lock()
	c.st.Committed = theirs.Version
	c.mu.Unlock()
	comOp, err := manifestOp(key(c.name, "committed"), theirs)
	if err != nil {
		return err
	}
	if err := c.saveState(ctx, comOp, blockstore.MetaOp{Key: key(c.name, "pending")}); err != nil {
		return err
	}
	c.w.log.Info("found this workstation's last commit on the server; recorded it", "clone", c.name, "generation", theirs.Version)
	return c.dropOutbox(ctx, p)
}
