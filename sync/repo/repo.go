// Package repo is the server's template repository: versions of templates
// as signed manifests over a content-addressed block store. It knows nothing
// of HTTP; sync/server puts it on the network.
//
// Commit order is data before metadata: blocks are stored durably first (by
// PutBlocks, or in the background after Accept), and Commit refuses a
// manifest that names a block the store lacks. A version becomes visible
// in one atomic metadata commit, so a publish cut off at any point leaves
// no partial version behind.
package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// Sentinel errors.
var (
	// ErrNotFound: no such template, version or clone.
	ErrNotFound = errors.New("no such template, version or clone")
	// ErrMissingBlocks: a manifest names blocks the store lacks.
	ErrMissingBlocks = errors.New("manifest names blocks the server lacks")
	// ErrInvalid: a request that can never succeed as sent.
	ErrInvalid = errors.New("invalid request")
	// ErrQuota: the upload would take a user past a quota
	// (Config.PendingQuota, Config.CloneQuota).
	ErrQuota = errors.New("over quota")
	// ErrNoSpace: the upload would take the server's disk below the
	// free space it keeps (Config.Room).
	ErrNoSpace = errors.New("the server's disk is full")
)

// MissingError lists the blocks a commit lacked.
type MissingError struct {
	IDs []blockstore.ID
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%v: %d blocks", ErrMissingBlocks, len(e.IDs))
}

func (e *MissingError) Unwrap() error { return ErrMissingBlocks }

// Store is what the repository keeps its blocks and metadata in.
type Store interface {
	blockstore.Store
	blockstore.MetaStore
}

// Config configures a Repo.
type Config struct {
	// Store holds blocks and metadata.
	Store Store
	// Key signs every committed manifest.
	Key ed25519.PrivateKey
	// Logger receives the repository's log.
	Logger *slog.Logger
	// GCGrace keeps unreferenced blocks uploaded less than this long ago,
	// so a collection does not take the blocks of a publish in progress.
	GCGrace time.Duration
	// Now tells the time (tests set it); nil means time.Now.
	Now func() time.Time
	// MaxDeltaDepth bounds the chains of blocks stored as deltas
	// (PutDeltas): a delta whose base is this deep is stored rebuilt,
	// whole. 0 means DefaultMaxDeltaDepth; a negative value stores every
	// delta whole. At most maxChain.
	MaxDeltaDepth int
	// PendingQuota bounds the frame bytes one user may have uploaded
	// that no commit names yet (they wait for one, for GCGrace at most).
	// 0 means DefaultPendingQuota; negative, no bound. Admins (uploads
	// through Accept, PutDeltas) have none.
	PendingQuota int64
	// CloneQuota bounds the data of one user's clones that no template
	// holds: the distinct blocks of all their generations and pending
	// uploads, counted in whole blocks of blockstore.DefaultBlockSize.
	// It is the default of users an admin set no quota for (SetQuota).
	// 0 means no bound.
	CloneQuota int64
	// Room, when set, is asked before an upload is taken, with the frame
	// bytes it may store; an error refuses the upload whole, wrapped in
	// ErrNoSpace, and the uploader tries again later. dvfs serve keeps
	// free space on its store's disk this way (--min-free): badger maps
	// its files, and a store into a mapped page that a full disk cannot
	// back is a SIGBUS that kills the server.
	Room func(need int64) error
}

// DefaultPendingQuota is Config.PendingQuota's default. A workstation
// uploads a whole generation (all that was written since its last sync)
// before it commits it, so the quota must exceed the largest one: a
// refused upload is retried, and the clone syncs only once the quota
// allows it.
const DefaultPendingQuota = 64 << 30

// DefaultGCGrace is Config.GCGrace's default.
const DefaultGCGrace = time.Hour

// Repo is a template repository. Its methods are safe for concurrent use.
type Repo struct {
	store Store
	key   ed25519.PrivateKey
	keyID string
	log   *slog.Logger
	grace time.Duration
	now   func() time.Time

	maxDeltaDepth int

	// mu orders commits and removals against garbage collection: a
	// collection sees either all of a commit or none of it.
	mu sync.Mutex

	// recent records when blocks were last uploaded, for GCGrace, and
	// by whom; pending sums the frame bytes of each user's.
	recentMu sync.Mutex
	recent   map[blockstore.ID]pendingUpload
	pending  map[string]int64

	pendingQuota, cloneQuota int64
	room                     func(need int64) error
	// quotas holds the per-user quotas on clone data read so far.
	quotas quotas

	// access says who may read which blocks.
	access access

	// intake stores the blocks Accept takes.
	intake intake

	// lastDeferred is when (UnixNano) blocks last arrived in deferred
	// frames, and deferredArrived says that they did (CompressLoop).
	lastDeferred    atomic.Int64
	deferredArrived chan struct{}

	// leaseEvents and commitEvents count what Stats reports.
	leaseEvents, commitEvents events

	// gcID names this process's collections in gcKey (collecting.go).
	gcID string
}

// New returns a repository over cfg.Store.
func New(cfg Config) (*Repo, error) {
	if cfg.Store == nil || len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("repo: a store and an ed25519 key are required")
	}
	r := &Repo{
		store:   cfg.Store,
		key:     cfg.Key,
		keyID:   manifest.KeyID(cfg.Key.Public().(ed25519.PublicKey)),
		log:     cfg.Logger,
		grace:   cfg.GCGrace,
		now:     cfg.Now,
		recent:  make(map[blockstore.ID]pendingUpload),
		pending: make(map[string]int64),

		pendingQuota: cfg.PendingQuota,
		cloneQuota:   cfg.CloneQuota,
		room:         cfg.Room,

		deferredArrived: make(chan struct{}, 1),
		gcID:            newGCID(),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.grace == 0 {
		r.grace = DefaultGCGrace
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.pendingQuota == 0 {
		r.pendingQuota = DefaultPendingQuota
	}
	switch d := cfg.MaxDeltaDepth; {
	case d == 0:
		r.maxDeltaDepth = DefaultMaxDeltaDepth
	case d < 0:
		r.maxDeltaDepth = 0
	default:
		r.maxDeltaDepth = min(d, maxChain)
	}
	return r, nil
}

// PublicKey returns the key that verifies this repository's manifests.
func (r *Repo) PublicKey() ed25519.PublicKey { return r.key.Public().(ed25519.PublicKey) }

// Missing returns the IDs of ids the repository lacks: neither in the
// block store nor stored as deltas (PutDeltas).
func (r *Repo) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	missing, err := r.store.Missing(ctx, ids)
	if err != nil || len(missing) == 0 {
		return missing, err
	}
	return r.withoutDeltas(ctx, missing)
}

// PutBlocks verifies each block against its ID and stores them all
// durably. A block that does not hash to its ID is refused with an error
// wrapping blockstore.ErrCorrupt, and none of the batch is stored.
func (r *Repo) PutBlocks(ctx context.Context, blocks []blockstore.Block) error {
	for _, b := range blocks {
		if err := CheckUpload(b); err != nil {
			return err
		}
	}
	r.uploaded(blocks)
	if err := r.store.Put(ctx, blocks...); err != nil {
		return err
	}
	r.noteDeferred(blocks)
	return nil
}

// CheckUpload is what PutBlocks checks of each block: that it is not the
// hole and that its frame decodes to bytes that hash to its ID.
func CheckUpload(b blockstore.Block) error {
	if b.ID.IsHole() {
		return fmt.Errorf("%w: the hole ID is never uploaded", ErrInvalid)
	}
	return blockstore.Verify(b.ID, b.Frame)
}

// uploaded starts the grace (GCGrace) of blocks that arrived: no
// collection takes them before a commit names them, or the grace ends.
func (r *Repo) uploaded(blocks []blockstore.Block) {
	_ = r.uploadedBy("", blocks)
}

// uploadedIDs is uploaded for an admin's blocks given by ID.
func (r *Repo) uploadedIDs(ids []blockstore.ID) {
	now := r.now()
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	for _, id := range ids {
		p := r.recent[id]
		p.at = now
		r.recent[id] = p
	}
}

// pendingUpload is a block in its grace: when it arrived, from whom ("":
// an admin) and its size as uploaded.
type pendingUpload struct {
	at    time.Time
	owner string
	size  int64
}

// uploadedBy is uploaded of blocks owner sent. It fails with ErrQuota,
// recording nothing, when they would take owner past the pending quota.
func (r *Repo) uploadedBy(owner string, blocks []blockstore.Block) error {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	if err := r.pendingRoomLocked(owner, blocks); err != nil {
		return err
	}
	r.recordLocked(owner, blocks)
	return nil
}

// recordLocked starts the grace of blocks owner sent; the caller holds
// recentMu.
func (r *Repo) recordLocked(owner string, blocks []blockstore.Block) {
	now := r.now()
	for _, b := range blocks {
		if p, ok := r.recent[b.ID]; ok {
			p.at = now // still charged to whoever sent it first
			r.recent[b.ID] = p
			continue
		}
		r.recent[b.ID] = pendingUpload{at: now, owner: owner, size: int64(len(b.Frame))}
		if owner != "" {
			r.pending[owner] += int64(len(b.Frame))
		}
	}
}

// pendingRoom fails with ErrQuota when blocks would take owner past the
// pending quota.
func (r *Repo) pendingRoom(owner string, blocks []blockstore.Block) error {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	return r.pendingRoomLocked(owner, blocks)
}

func (r *Repo) pendingRoomLocked(owner string, blocks []blockstore.Block) error {
	if owner != "" && r.pendingQuota > 0 {
		add := int64(0)
		for _, b := range blocks {
			if _, ok := r.recent[b.ID]; !ok {
				add += int64(len(b.Frame))
			}
		}
		if have := r.pending[owner]; add > 0 && have+add > r.pendingQuota {
			return fmt.Errorf("%w: %s has %d bytes uploaded that no commit names yet; %d more would pass the quota of %d (commit, or wait for the collection of uploads older than %s)",
				ErrQuota, owner, have, add, r.pendingQuota, r.grace)
		}
	}
	return nil
}

// unpendLocked ends the grace of a block; the caller holds recentMu.
func (r *Repo) unpendLocked(id blockstore.ID) {
	p, ok := r.recent[id]
	if !ok {
		return
	}
	delete(r.recent, id)
	if p.owner != "" {
		if r.pending[p.owner] -= p.size; r.pending[p.owner] <= 0 {
			delete(r.pending, p.owner)
		}
	}
}

// Pending returns the frame bytes owner uploaded that no commit names
// yet and no collection took.
func (r *Repo) Pending(owner string) int64 {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	return r.pending[owner]
}

// committed ends the grace of blocks a commit now protects: once a
// manifest names them they live as long as it does, and when it is removed
// they must be collectable at once.
func (r *Repo) committed(ids []blockstore.ID) {
	r.recentMu.Lock()
	for _, id := range ids {
		r.unpendLocked(id)
	}
	r.recentMu.Unlock()
}

// Frame appends the verified frame of block id to dst. A block still in
// its deferred frame (uploaded uncompressed, not yet compressed by
// CompressLoop) is compressed on the way out: what workstations fetch, and
// what a multicast session sends right after a publish, goes on the wire
// compressed.
//
// A block stored as a delta (PutDeltas) is rebuilt, checked against its
// ID and sent as an ordinary frame (blockstore.Encode): workstations never
// see delta frames from here.
func (r *Repo) Frame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	start := len(dst)
	out, err := r.store.GetFrame(ctx, id, dst)
	if errors.Is(err, blockstore.ErrNotFound) {
		return r.deltaFrame(ctx, id, dst, err)
	}
	if err != nil || !blockstore.Deferred(out[start:]) {
		return out, err
	}
	_, plain, err := blockstore.SplitFrame(out[start:])
	if err != nil {
		return dst, err
	}
	bp := frames.Get().(*[]byte)
	defer frames.Put(bp)
	*bp = blockstore.Encode((*bp)[:0], plain)
	return append(out[:start], *bp...), nil
}

// deltaFrame is Frame of a block the block store lacks (notFound says
// so): rebuilt from its deltas, if it is stored so.
func (r *Repo) deltaFrame(ctx context.Context, id blockstore.ID, dst []byte, notFound error) ([]byte, error) {
	if ok, err := r.hasDelta(ctx, id); err != nil || !ok {
		return dst, errors.Join(notFound, err)
	}
	bp := frames.Get().(*[]byte)
	defer frames.Put(bp)
	plain, _, err := r.rebuild(ctx, id, (*bp)[:0])
	*bp = plain[:0]
	if err != nil {
		return dst, err
	}
	return blockstore.Encode(dst, plain), nil
}

var frames = sync.Pool{New: func() any { b := make([]byte, 0, blockstore.DefaultBlockSize+64); return &b }}

// checkRoom refuses an upload of need frame bytes that Config.Room says
// the disk has no room for.
func (r *Repo) checkRoom(need int) error {
	if r.room == nil {
		return nil
	}
	if err := r.room(int64(need)); err != nil {
		return fmt.Errorf("%w: %v; uploads are refused until space is freed", ErrNoSpace, err)
	}
	return nil
}
