package writeback

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// cloneWB is the writeback of one clone. One goroutine (loop) seals,
// uploads and commits; Writable and Synced only read and poke it.
type cloneWB struct {
	w    *Writeback
	name string

	kick     chan struct{}   // a seal is due
	flushReq chan chan error // flush now and answer
	dropped  chan struct{}   // closed when the writeback forgets the clone: the loop ends

	// mu guards what Writable reads and the loop writes.
	mu      sync.Mutex
	st      state
	loaded  bool
	lease   api.Lease
	holdErr error // why this workstation may not write, if it may not
	// wroteHere is set once a change was allowed in this process.
	wroteHere bool
	// syncedChanges is the overlay's change count (changeCounter) at the
	// last seal saved as pending (or found unchanged); checked says such
	// a seal ran in this process. stall is why the last cycle failed, since when.
	syncedChanges uint64
	checked       bool
	stall         error
	stallSince    time.Time

	// Used by the loop (and BaseManifest before the loop writes) only.
	base  *manifest.Manifest
	known known
	// noDelta: the server refused a delta since the last commit; blocks
	// go whole until the next one.
	noDelta bool
	// sent counts the batch bytes uploaded.
	sent atomic.Int64
	// changingSince is when the clone first changed since the last seal
	// (zero: not since), pendingSince the same for the changes the
	// pending generation holds (stats.go). Guarded by mu.
	changingSince, pendingSince time.Time
	// pend is the pending record's counts as last read (Status), kept
	// while pendValid; a commit that writes the record clears pendValid
	// and counts in pendWrites first. Guarded by mu. dvfs umount polls
	// the status; decoding the record each time (a quarter of a MiB for a
	// 512 MiB disk) took 11% of a syncing mount's CPU in the storm
	// benchmark at N=30.
	pend       pendingSummary
	pendHas    bool
	pendValid  bool
	pendWrites uint64
}

// pendingWritten records that the pending record changes: call it before
// the commit that writes it, so that a Status reading meanwhile does not
// keep what it read.
func (c *cloneWB) pendingWritten() {
	c.mu.Lock()
	c.pendWrites++
	c.pendValid = false
	c.mu.Unlock()
}

// pendingSummary returns the pending record's counts, reading the record
// only when it changed since the last call.
func (c *cloneWB) pendingSummary(ctx context.Context) (pendingSummary, bool) {
	c.mu.Lock()
	if c.pendValid {
		defer c.mu.Unlock()
		return c.pend, c.pendHas
	}
	gen := c.pendWrites
	c.mu.Unlock()
	var p pendingSummary
	has, err := getJSON(ctx, c.w.cfg.Store, key(c.name, "pending"), &p)
	if err != nil {
		return pendingSummary{}, false
	}
	c.mu.Lock()
	if c.pendWrites == gen {
		c.pend, c.pendHas, c.pendValid = p, has, true
	}
	c.mu.Unlock()
	return p, has
}

func (c *cloneWB) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// load reads the clone's saved state; a clone seen for the first time
// starts from base, the server's latest generation.
func (c *cloneWB) load(ctx context.Context, latest func() (*manifest.Manifest, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded {
		return nil
	}
	s := c.w.cfg.Store
	ok, err := getJSON(ctx, s, key(c.name, "state"), &c.st)
	if err != nil {
		return err
	}
	if ok {
		if c.base, err = getManifest(ctx, s, key(c.name, "base")); err != nil {
			return fmt.Errorf("writeback state of %s: base: %w", c.name, err)
		}
		// Outbox files no pending generation names are seals a crash
		// cut short.
		var p pending
		if _, err := getJSON(ctx, s, key(c.name, "pending"), &p); err != nil {
			return err
		}
		if err := c.w.outbox.sweep(outboxPrefix(c.name), p.OutboxFile); err != nil {
			c.w.log.Warn("cannot clean the outbox", "clone", c.name, "err", err)
		}
		c.loaded = true
		return nil
	}
	if latest == nil {
		return fmt.Errorf("clone %s: %w", c.name, blockstore.ErrNotFound)
	}
	m, err := latest()
	if err != nil {
		return err
	}
	info, err := c.w.cfg.Server.Clone(ctx, c.name)
	if err != nil {
		return err
	}
	// Keep a lease epoch taken before the (re)load.
	c.st = state{Base: m.Version, Committed: m.Version, Template: info.Template, TemplateVersion: info.TemplateVersion, Epoch: c.st.Epoch}
	stOp, err := putOp(key(c.name, "state"), c.st)
	if err != nil {
		return err
	}
	baseOp, err := manifestOp(key(c.name, "base"), m)
	if err != nil {
		return err
	}
	comOp, _ := manifestOp(key(c.name, "committed"), m)
	if err := s.CommitMeta(ctx, stOp, baseOp, comOp); err != nil {
		return err
	}
	c.base, c.loaded = m, true
	return nil
}

func (c *cloneWB) saveState(ctx context.Context, extra ...blockstore.MetaOp) error {
	c.mu.Lock()
	st, loaded := c.st, c.loaded
	c.mu.Unlock()
	if !loaded {
		// A state without its base manifest would fail every later
		// load; an unloaded clone (forgotten, or reloading) has none.
		return fmt.Errorf("clone %s: writeback state not loaded", c.name)
	}
	op, err := putOp(key(c.name, "state"), st)
	if err != nil {
		return err
	}
	for _, e := range extra {
		if e.Key == key(c.name, "pending") {
			c.pendingWritten()
		}
	}
	return c.w.cfg.Store.CommitMeta(ctx, append(extra, op)...)
}

// writable is the filesystem's question before every change: fast while
// the lease is good; otherwise it asks for the lease once.
func (c *cloneWB) writable(ctx context.Context) error {
	c.mu.Lock()
	if c.st.Lost && c.st.Removed {
		defer c.mu.Unlock()
		if c.st.ConflictClone == "" {
			return fmt.Errorf("clone %s was removed on the server; nothing written here was lost", c.name)
		}
		return fmt.Errorf("clone %s was removed on the server; the changes made here were saved as clone %s", c.name, c.st.ConflictClone)
	}
	if c.st.Lost {
		defer c.mu.Unlock()
		return fmt.Errorf("clone %s was taken over by another workstation; the changes made here were saved as clone %s; open it there or reopen this one", c.name, c.st.ConflictClone)
	}
	if c.lease.Epoch != 0 {
		c.mu.Unlock()
		return nil // held (renewed by the loop, which also keeps it offline)
	}
	c.mu.Unlock()
	if err := c.acquire(ctx, false); err != nil {
		return err
	}
	return c.rebaseIfStale(ctx)
}

// rebaseIfStale runs when this workstation has just taken a clone it never
// wrote (it had it read-only while another workstation wrote): if the
// server moved past the generation the overlay was opened on, the overlay
// (which holds no change of ours) is dropped so the clone reloads at the
// latest generation. The change that asked fails once with a clear error;
// the retry goes to the fresh clone.
func (c *cloneWB) rebaseIfStale(ctx context.Context) error {
	c.mu.Lock()
	fresh := !c.wroteHere && c.loaded
	committed := c.st.Committed
	c.wroteHere = true
	c.mu.Unlock()
	if !fresh {
		return nil
	}
	info, err := c.w.cfg.Server.Clone(ctx, c.name)
	if err != nil || info.Generation == committed {
		return nil // offline, or up to date
	}
	var p pending
	if has, _ := getJSON(ctx, c.w.cfg.Store, key(c.name, "pending"), &p); has {
		return nil // changes of ours exist: the commit will sort it out
	}
	if err := c.w.cfg.Overlay.Drop(ctx, c.name); err != nil {
		c.mu.Lock()
		c.wroteHere = false
		c.mu.Unlock()
		return fmt.Errorf("clone %s changed on the server since it was opened here; close its files and retry: %w", c.name, err)
	}
	ops := []blockstore.MetaOp{{Key: key(c.name, "state")}, {Key: key(c.name, "base")}, {Key: key(c.name, "committed")}}
	if err := c.w.cfg.Store.CommitMeta(ctx, ops...); err != nil {
		return err
	}
	c.mu.Lock()
	c.loaded, c.st = false, state{Epoch: c.lease.Epoch}
	c.mu.Unlock()
	c.w.log.Info("clone changed on the server since it was opened here; reloaded at the latest generation", "clone", c.name, "generation", info.Generation)
	return fmt.Errorf("clone %s was reloaded at generation %d (it changed on the server since it was opened here); retry", c.name, info.Generation)
}

// acquire takes or renews the lease.
func (c *cloneWB) acquire(ctx context.Context, force bool) error {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := c.w.cfg.Server.AcquireLease(actx, c.name, c.w.cfg.Holder, c.w.cfg.LeaseTTL, force)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if isGone(err) {
			return fmt.Errorf("clone %s: lease: %w (%w)", c.name, errGone, err)
		}
		var he interface{ LeaseHolder() (api.Lease, bool) }
		if errors.As(err, &he) {
			if l, ok := he.LeaseHolder(); ok {
				c.w.stats.lease("refused")
				c.lease = api.Lease{}
				c.holdErr = fmt.Errorf("clone %s is leased to %s until %s; opened read-only (take it over with dvfs clone takeover)",
					c.name, l.Holder, l.Expires.Local().Format(time.TimeOnly))
				return c.holdErr
			}
		}
		if c.st.Epoch != 0 && !c.st.Lost {
			// Offline, and this workstation held the lease last: keep
			// working locally; the commits will tell if it was lost.
			c.lease = api.Lease{Holder: c.w.cfg.Holder, Epoch: c.st.Epoch}
			c.w.stats.lease("offline")
			// Changes follow under the old epoch: if the lease moved on
			// meanwhile, that is worth the warning above.
			c.st.Released = false
			return nil
		}
		return fmt.Errorf("clone %s: cannot take its lease: %w", c.name, err)
	}
	if c.st.Epoch != 0 && l.Epoch != c.st.Epoch && !c.st.Released {
		// The lease moved on without us (expired and taken, then given
		// back): what we did not commit belongs to an old epoch.
		c.w.log.Warn("clone lease was held by another workstation meanwhile", "clone", c.name, "old_epoch", c.st.Epoch, "epoch", l.Epoch)
	}
	c.lease, c.holdErr = l, nil
	if c.st.Epoch == l.Epoch {
		c.w.stats.lease("renewed")
		return nil
	}
	c.w.stats.lease("acquired")
	// Remember the epoch durably before anything is written under it: a
	// restart must know this workstation has changes to sync.
	c.st.Epoch, c.st.Released = l.Epoch, false
	if !c.loaded {
		// No base yet: load keeps the epoch and saves it with the base.
		return nil
	}
	op, err := putOp(key(c.name, "state"), c.st)
	if err != nil {
		return err
	}
	return c.w.cfg.Store.CommitMeta(ctx, op)
}

// loop seals and syncs the clone on pokes, on a timer, and on flushes,
// and renews the lease.
func (c *cloneWB) loop(ctx context.Context) {
	defer c.w.wg.Done()
	t := time.NewTicker(c.w.cfg.Interval)
	defer t.Stop()
	renew := time.NewTicker(c.w.cfg.LeaseTTL / 3)
	defer renew.Stop()
	backoff := time.Second
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-c.dropped:
			return
		case <-c.kick:
		case <-t.C:
		case <-retry.C:
		case reply = <-c.flushReq:
		case <-renew.C:
			c.mu.Lock()
			held := c.lease.Epoch != 0 && !c.st.Lost
			c.mu.Unlock()
			if held {
				err := c.acquire(ctx, false)
				if errors.Is(err, errGone) {
					err = c.removed(ctx)
				}
				if err != nil {
					c.w.log.Warn("lease renewal failed", "clone", c.name, "err", err)
				}
			}
			continue
		}
		err := c.cycle(ctx)
		if errors.Is(err, errGone) {
			err = c.removed(ctx)
		}
		c.mu.Lock()
		if err != nil && ctx.Err() == nil {
			if c.stall == nil {
				c.stallSince = time.Now()
			}
			c.stall = err
		} else if err == nil {
			c.stall = nil
		}
		c.mu.Unlock()
		if reply != nil {
			reply <- err
		}
		if err != nil && ctx.Err() == nil {
			c.w.log.Warn("writeback will retry", "clone", c.name, "in", backoff, "err", err)
			retry.Reset(backoff + time.Duration(rand.Int64N(int64(backoff/4)+1)))
			backoff = min(2*backoff, time.Minute)
		} else {
			backoff = time.Second
		}
	}
}

// flush asks the loop for a cycle and waits for its outcome.
func (c *cloneWB) flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case c.flushReq <- reply:
	case <-c.dropped:
		return nil // forgotten: nothing of it is kept here
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cycle commits a pending generation, then seals and commits a new one if
// the clone changed. Until the clone is written here, it does nothing.
func (c *cloneWB) cycle(ctx context.Context) error {
	c.mu.Lock()
	loaded, lost, epoch, held := c.loaded, c.st.Lost, c.st.Epoch, c.lease.Epoch != 0
	c.mu.Unlock()
	if !loaded || lost || (!held && epoch == 0) {
		return nil // not written here yet
	}
	if !held {
		// Written here before a restart: take the lease back (a renewal,
		// same epoch, unless another workstation has had it since).
		if err := c.acquire(ctx, false); err != nil {
			return err
		}
	}
	var p pending
	has, err := getJSON(ctx, c.w.cfg.Store, key(c.name, "pending"), &p)
	if err != nil {
		return err
	}
	if has {
		if err := c.commit(ctx, &p); err != nil {
			return err
		}
	}
	sealedAt := time.Now()
	s, err := c.seal(ctx)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	c.w.log.Debug("clone sealed", "clone", c.name, "sealed_at", sealedAt.UnixNano(), "new_blocks", s.blocks, "as_sectors", s.sectorsOnly, "held", s.held, "synced", s.synced)
	p, err = c.savePending(ctx, s)
	if err != nil {
		// The seal cleared the dirty marks of blocks whose only copy is
		// in its outbox file: the next seal reads every block afresh.
		c.known = nil
		return err
	}
	// Every change the seal captured is in the pending generation now
	// (or in the committed one, when nothing changed).
	c.sealSaved(s.changes)
	if p.Manifest == nil {
		return nil // nothing changed
	}
	return c.commit(ctx, &p)
}

// sealSaved records that every change the overlay counted (changes) at a
// seal is in the pending or the committed generation.
func (c *cloneWB) sealSaved(changes uint64) {
	c.mu.Lock()
	c.syncedChanges, c.checked = changes, true
	c.pendingSince, c.changingSince = c.changingSince, time.Time{}
	c.mu.Unlock()
}

// changeCounter is the optional ability of an Overlay to count the changes
// made to a clone (fs.FS.Changes): read while Seal holds changes off, it
// counts exactly the changes that seal captures.
type changeCounter interface {
	Changes(clone string) uint64
}

// overlayChanges is the overlay's change count of the clone, ok false when
// the overlay does not count.
func (c *cloneWB) overlayChanges() (uint64, bool) {
	cc, ok := c.w.cfg.Overlay.(changeCounter)
	if !ok {
		return 0, false
	}
	return cc.Changes(c.name), true
}

// savePending saves a sealed generation as pending, or drops it (a zero
// pending) when the tree is the one committed last.
func (c *cloneWB) savePending(ctx context.Context, s sealed) (pending, error) {
	committed, err := getManifest(ctx, c.w.cfg.Store, key(c.name, "committed"))
	if err != nil {
		c.w.outbox.remove(s.file)
		return pending{}, err
	}
	if sameTree(s.m, committed) {
		// Every block is in the committed generation, on the server.
		return pending{}, c.w.outbox.remove(s.file)
	}
	body, err := s.m.MarshalBinary()
	if err != nil {
		c.w.outbox.remove(s.file)
		return pending{}, err
	}
	c.mu.Lock()
	p := pending{Parent: c.st.Committed, Manifest: body, OutboxFile: s.file, Blocks: s.blocks}
	c.mu.Unlock()
	op, err := putOp(key(c.name, "pending"), p)
	if err != nil {
		c.w.outbox.remove(s.file)
		return pending{}, err
	}
	// On error the file stays: the next load sweeps it unless the pending
	// generation was saved after all.
	c.pendingWritten()
	return p, c.w.cfg.Store.CommitMeta(ctx, op)
}

// dropOutbox deletes the outbox of a pending generation that is committed
// or given up.
func (c *cloneWB) dropOutbox(ctx context.Context, p *pending) error {
	err := c.w.outbox.remove(p.OutboxFile)
	if len(p.Outbox) > 0 {
		err = errors.Join(err, c.w.cfg.Store.Delete(ctx, p.Outbox...))
	}
	return err
}

// commit uploads a pending generation's blocks and commits it. A takeover
// (the server fences our epoch off) saves it as a conflict clone instead.
func (c *cloneWB) commit(ctx context.Context, p *pending) error {
	m, err := manifest.Unmarshal(p.Manifest)
	if err != nil {
		return fmt.Errorf("pending generation: %w", err)
	}
	sent0 := c.sent.Load()
	if err := c.upload(ctx, m, p.OutboxFile); err != nil {
		return err
	}
	c.mu.Lock()
	epoch := c.lease.Epoch
	c.mu.Unlock()
	// The committed manifest is the parent's when it is the generation
	// this one was sealed on (it is, unless the state was lost).
	parentM, err := getManifest(ctx, c.w.cfg.Store, key(c.name, "committed"))
	if err != nil || parentM.Version != p.Parent {
		parentM = nil
	}
	info, err := c.w.cfg.Server.CommitGeneration(ctx, m, p.Parent, epoch, parentM)
	if err != nil {
		if isRefused(err) {
			// An earlier attempt may have committed on a server that
			// died, or over a connection that dropped, before it
			// answered: then the generation after the parent is this
			// one, and nothing conflicts.
			theirs, ferr := c.ourNext(ctx, p)
			if ferr != nil {
				return fmt.Errorf("commit refused (%v); asking the server whether an earlier attempt went through: %w", err, ferr)
			}
			if theirs != nil {
				c.w.stats.commits.Add(1)
				return c.adopt(ctx, p, theirs)
			}
			return c.conflict(ctx, m, p)
		}
		if isGone(err) {
			return fmt.Errorf("commit: %w (%w)", errGone, err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	c.mu.Lock()
	c.st.Committed = info.Generation
	c.mu.Unlock()
	c.w.stats.commits.Add(1)
	c.noDelta = false
	m.Version = info.Generation
	comOp, err := manifestOp(key(c.name, "committed"), m)
	if err != nil {
		return err
	}
	if err := c.saveState(ctx, comOp, blockstore.MetaOp{Key: key(c.name, "pending")}); err != nil {
		return err
	}
	c.w.log.Debug("clone generation committed", "clone", c.name, "generation", info.Generation,
		"uploaded_bytes", c.sent.Load()-sent0, "committed_at", time.Now().UnixNano())
	return c.dropOutbox(ctx, p)
}

// conflict saves a generation the server refused (another workstation took
// the clone over) as a new clone, so no change is ever dropped, and stops
// writing here.
func (c *cloneWB) conflict(ctx context.Context, m *manifest.Manifest, p *pending) error {
	c.mu.Lock()
	tpl, tv := c.st.Template, c.st.TemplateVersion
	c.mu.Unlock()
	name, err := c.w.saveConflict(ctx, c.name, m, tpl, tv)
	if err != nil {
		return fmt.Errorf("saving the refused changes: %w", err)
	}
	c.mu.Lock()
	c.st.Lost, c.st.ConflictClone = true, name
	c.lease = api.Lease{}
	c.mu.Unlock()
	c.w.stats.lease("lost")
	c.w.log.Warn("clone taken over by another workstation; unsynced changes saved as a new clone", "clone", c.name, "conflict_clone", name)
	// What the conflict clone holds counts as committed: the next mount's
	// reconcile compares the overlay with it and saves only what is newer.
	comOp, err := manifestOp(key(c.name, "committed"), m)
	if err != nil {
		return err
	}
	if err := c.saveState(ctx, comOp, blockstore.MetaOp{Key: key(c.name, "pending")}); err != nil {
		return err
	}
	return c.dropOutbox(ctx, p)
}

// saveConflict creates clone NAME-conflict-TIME holding m (its blocks
// already on the server), of the clone's template version, and returns
// its name.
func (w *Writeback) saveConflict(ctx context.Context, clone string, m *manifest.Manifest, tpl string, tv uint64) (string, error) {
	cm := *m
	cm.Name = fmt.Sprintf("%s-conflict-%s", clone, time.Now().UTC().Format("20060102-150405"))
	if _, err := w.cfg.Server.CreateClone(ctx, &cm, tpl, tv); err != nil {
		return "", fmt.Errorf("clone %s: %w", cm.Name, err)
	}
	return cm.Name, nil
}

// removed handles a clone the server no longer has (dvfs clone rm, here
// or from another workstation): what was written here and is not on the
// server is saved as a new clone, so no change is dropped, and the clone
// stops syncing here, with writes refused; a clone that no longer exists
// is not an outage to retry. The next mount drops it (Reconcile).
func (c *cloneWB) removed(ctx context.Context) error {
	c.mu.Lock()
	done := c.st.Lost || !c.loaded
	c.mu.Unlock()
	if done {
		return nil
	}
	var p pending
	has, err := getJSON(ctx, c.w.cfg.Store, key(c.name, "pending"), &p)
	if err != nil {
		return err
	}
	// Every local block goes into this seal's file: some are only in the
	// pending generation's outbox, and the server no longer lets this
	// user read the removed clone's blocks (it asks for them again).
	c.known = nil
	s, err := c.seal(ctx)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	committed, err := getManifest(ctx, c.w.cfg.Store, key(c.name, "committed"))
	if err != nil {
		c.w.outbox.remove(s.file)
		return err
	}
	name := ""
	if !sameTree(s.m, committed) {
		if err := c.upload(ctx, s.m, s.file); err != nil {
			c.known = nil
			c.w.outbox.remove(s.file)
			return err
		}
		c.mu.Lock()
		tpl, tv := c.st.Template, c.st.TemplateVersion
		c.mu.Unlock()
		if name, err = c.w.saveConflict(ctx, c.name, s.m, tpl, tv); err != nil {
			c.known = nil
			c.w.outbox.remove(s.file)
			return fmt.Errorf("saving the changes of removed clone %s: %w", c.name, err)
		}
	}
	c.mu.Lock()
	c.st.Lost, c.st.Removed, c.st.ConflictClone = true, true, name
	c.lease, c.holdErr = api.Lease{}, nil
	c.mu.Unlock()
	if name != "" {
		c.w.log.Warn("clone removed on the server; the changes made here that it lacked were saved as a new clone", "clone", c.name, "conflict_clone", name)
	} else {
		c.w.log.Info("clone removed on the server; nothing written here was lost; it stops syncing here", "clone", c.name)
	}
	comOp, err := manifestOp(key(c.name, "committed"), s.m)
	if err != nil {
		return err
	}
	err = c.saveState(ctx, comOp, blockstore.MetaOp{Key: key(c.name, "pending")})
	err = errors.Join(err, c.w.outbox.remove(s.file))
	if has {
		err = errors.Join(err, c.dropOutbox(ctx, &p))
	}
	c.sealSaved(s.changes)
	return err
}

// release gives the lease back after a clean flush.
func (c *cloneWB) release(ctx context.Context) {
	c.mu.Lock()
	l := c.lease
	c.mu.Unlock()
	if l.Epoch == 0 {
		return
	}
	if err := c.w.cfg.Server.ReleaseLease(ctx, c.name, c.w.cfg.Holder, l.Epoch); err != nil {
		c.w.log.Warn("lease release failed (it will expire)", "clone", c.name, "err", err)
		return
	}
	c.mu.Lock()
	c.lease = api.Lease{}
	c.st.Released = c.loaded
	c.mu.Unlock()
	if c.st.Released {
		if err := c.saveState(ctx); err != nil {
			c.w.log.Warn("cannot record the lease's release", "clone", c.name, "err", err)
		}
	}
}
