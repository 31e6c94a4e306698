package repo

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Accept takes blocks that each passed CheckUpload, for the repository to
// store in the background, and returns as soon as they are queued. It is
// the server's upload. A durable Put flushes the disk's cache three times
// (the payloads, then the index's log and value log), and each flush holds
// up the disk for everything else: publishing a 2 GiB image took 78 Puts,
// 234 flushes, each upload waiting for its own. Taken in the background,
// blocks are written as they come and made durable, and present, many
// batches at a time (blockstore.Stager): every commitEvery bytes, once
// uploads pause for idleCommit, and before any commit (Commit,
// CommitGeneration, CreateClone) that names them. The same publish then
// took 16 rounds, 48 flushes.
//
// Until then an accepted block counts as missing (Missing says so): nothing
// points at it before it is durable, and a crash loses only blocks that no
// version names yet, which a publish run again, or a workstation's next
// sync of its clone, sends again.
//
// release is called once the blocks' frames are no longer needed (they
// are written, or failed to be). Accept waits while more than maxQueued
// bytes wait to be written, so a client that sends faster than the disk
// writes is held back; ctx ends that wait.
func (r *Repo) Accept(ctx context.Context, blocks []blockstore.Block, release func()) error {
	return r.AcceptFor(ctx, "", blocks, release)
}

// AcceptFor is Accept of blocks a user uploads: owner may read them from
// now on (each passed CheckUpload, so the user holds their bytes), and
// they count against owner's quota of pending uploads (Config.
// PendingQuota) until a commit names them or a collection takes them. An
// upload over that quota, or over owner's quota on clone data (SetQuota),
// is refused whole with an error wrapping ErrQuota, and one the disk has
// no room for (Config.Room) with ErrNoSpace; release is not called then.
// Owner "" is an admin's upload.
func (r *Repo) AcceptFor(ctx context.Context, owner string, blocks []blockstore.Block, release func()) error {
	size := 0
	for _, b := range blocks {
		size += len(b.Frame)
	}
	if err := r.checkRoom(size); err != nil {
		return err
	}
	if owner != "" {
		ids := make([]blockstore.ID, len(blocks))
		for i, b := range blocks {
			ids[i] = b.ID
		}
		if err := r.quotaRoom(ctx, owner, "upload", ids); err != nil {
			return err
		}
		if err := r.uploadedBy(owner, blocks); err != nil {
			return err
		}
		if err := r.grant(ctx, owner, ids); err != nil {
			return err
		}
	} else {
		r.uploaded(blocks)
	}
	return r.intake.add(ctx, r, accepted{blocks: blocks, size: size, release: release})
}

const (
	// maxQueued bounds the frame bytes accepted and not yet written: two
	// batches of a publish. Each holds its upload's buffer; 64 MiB was
	// no faster (2.42-3.00 s against 2.47-2.70 s) and kept 40 MiB more.
	maxQueued = 32 << 20
	// intakeWriters is how many goroutines write accepted blocks, and
	// writeChunk about how many frame bytes one takes at a time.
	intakeWriters = 2
	writeChunk    = 32 << 20
	// commitEvery bounds the bytes written and not yet committed (what a
	// crash loses of a publish in progress, which its rerun sends again:
	// 64 MiB was also faster than 256 here, 2.31-2.55 s against
	// 2.54-2.74 s, a flush costing in proportion to what it flushes), and
	// idleCommit is how long after the last upload a commit comes.
	commitEvery = 64 << 20
	idleCommit  = 200 * time.Millisecond
)

// intake is the queue of accepted blocks, its writers (goroutines started
// when blocks arrive and gone when the queue is empty) and the commits of
// what they wrote.
type intake struct {
	mu         sync.Mutex
	cond       sync.Cond // signals that batches were written or committed
	queue      []accepted
	queued     int // frame bytes queued or being written
	pending    []written
	pendingLen int      // frame bytes in pending
	added      uint64   // batches accepted so far
	unfinished []uint64 // the batches not yet committed (or failed), ascending
	flushTo    uint64   // a settle waits for the batches up to this one
	writers    int
	committing bool
	idle       *time.Timer // armed: an idle commit will come
	lastAdd    time.Time   // when the last batch was accepted
}

type accepted struct {
	seq     uint64
	blocks  []blockstore.Block
	size    int
	release func()
}

// written is accepted batches staged together, waiting for their commit.
type written struct {
	seqs   []uint64
	staged blockstore.Staged
}

func (in *intake) init() {
	if in.cond.L == nil {
		in.cond.L = &in.mu
	}
}

// wait waits on in.cond until done says so or ctx ends; in.mu is held.
func (in *intake) wait(ctx context.Context, done func() bool) error {
	if done() {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		in.mu.Lock()
		in.cond.Broadcast()
		in.mu.Unlock()
	})
	defer stop()
	for !done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		in.cond.Wait()
	}
	return nil
}

func (in *intake) add(ctx context.Context, r *Repo, a accepted) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.init()
	if err := in.wait(ctx, func() bool { return in.queued == 0 || in.queued+a.size <= maxQueued }); err != nil {
		return err
	}
	in.added++
	in.lastAdd = time.Now()
	a.seq = in.added
	in.queue = append(in.queue, a)
	in.queued += a.size
	in.unfinished = append(in.unfinished, a.seq)
	if in.writers < intakeWriters {
		in.writers++
		go in.write(r)
	}
	return nil
}

// write writes from the queue until it is empty: staged, where the store
// can (blockstore.Stager), for a later commit; else Put, durable at once.
// A failure is logged, and the blocks count as missing: a commit that
// names them is refused.
func (in *intake) write(r *Repo) {
	stager, _ := r.store.(blockstore.Stager)
	in.mu.Lock()
	for len(in.queue) > 0 {
		n, size := 0, 0
		for n < len(in.queue) && (n == 0 || size+in.queue[n].size <= writeChunk) {
			size += in.queue[n].size
			n++
		}
		batch := slices.Clone(in.queue[:n])
		in.queue = slices.Delete(in.queue, 0, n)
		in.mu.Unlock()

		blocks := batch[0].blocks
		for _, a := range batch[1:] {
			blocks = append(slices.Clip(blocks), a.blocks...)
		}
		// Not the uploader's context: its request is over, and what it
		// sent is stored all the same.
		var (
			staged blockstore.Staged
			err    error
		)
		if stager != nil {
			staged, err = stager.Stage(context.Background(), blocks...)
		} else {
			err = r.store.Put(context.Background(), blocks...)
		}
		if err != nil {
			r.log.Error("storing uploaded blocks", "blocks", len(blocks), "err", err)
		} else {
			r.noteDeferred(blocks)
		}
		seqs := make([]uint64, len(batch))
		for i, a := range batch {
			seqs[i] = a.seq
			if a.release != nil {
				a.release()
			}
		}

		in.mu.Lock()
		in.queued -= size
		if staged != nil {
			in.pending = append(in.pending, written{seqs: seqs, staged: staged})
			in.pendingLen += size
			if in.pendingLen >= commitEvery || in.flushTo >= seqs[0] {
				in.commit(stager, r)
			}
		} else {
			in.finish(seqs)
		}
		in.cond.Broadcast()
	}
	in.writers--
	if in.writers == 0 && len(in.pending) > 0 && in.idle == nil {
		var idle func()
		idle = func() {
			in.mu.Lock()
			defer in.mu.Unlock()
			if wait := idleCommit - time.Since(in.lastAdd); wait > 0 {
				in.idle = time.AfterFunc(wait, idle) // uploads go on
				return
			}
			in.idle = nil
			in.commit(stager, r)
		}
		in.idle = time.AfterFunc(idleCommit, idle)
	}
	in.mu.Unlock()
}

// commit commits everything pending, unless a commit is running; in.mu is
// held, and let go meanwhile.
func (in *intake) commit(stager blockstore.Stager, r *Repo) {
	if in.committing || len(in.pending) == 0 {
		return
	}
	in.committing = true
	batch := in.pending
	in.pending, in.pendingLen = nil, 0
	in.mu.Unlock()

	staged := make([]blockstore.Staged, len(batch))
	for i, w := range batch {
		staged[i] = w.staged
	}
	if err := stager.CommitStaged(context.Background(), staged); err != nil {
		r.log.Error("committing uploaded blocks", "err", err)
	}

	in.mu.Lock()
	for _, w := range batch {
		in.finish(w.seqs)
	}
	in.committing = false
	in.cond.Broadcast()
}

// finish drops seqs from the unfinished batches; in.mu is held.
func (in *intake) finish(seqs []uint64) {
	in.unfinished = slices.DeleteFunc(in.unfinished, func(s uint64) bool { return slices.Contains(seqs, s) })
}

// settle waits until every batch accepted before it was called is
// committed (or failed), or ctx ends, committing what is written meanwhile
// itself rather than wait for the idle commit.
func (in *intake) settle(ctx context.Context, r *Repo) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.init()
	target := in.added
	done := func() bool { return len(in.unfinished) == 0 || in.unfinished[0] > target }
	for !done() {
		in.flushTo = max(in.flushTo, target)
		if !in.committing && len(in.pending) > 0 && in.pending[0].seqs[0] <= target {
			stager, _ := r.store.(blockstore.Stager)
			in.commit(stager, r)
			continue
		}
		if err := in.wait(ctx, func() bool {
			return done() || (!in.committing && len(in.pending) > 0 && in.pending[0].seqs[0] <= target)
		}); err != nil {
			return err
		}
	}
	return nil
}

// lacking is Missing for a commit: it first waits for the blocks accepted
// so far to be committed.
func (r *Repo) lacking(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	if err := r.intake.settle(ctx, r); err != nil {
		return nil, err
	}
	return r.Missing(ctx, ids)
}

// Settle waits until every block accepted so far is committed (or
// failed): before the store is closed.
func (r *Repo) Settle(ctx context.Context) error { return r.intake.settle(ctx, r) }
