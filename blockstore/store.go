package blockstore

import (
	"context"
	"errors"
	"io"
)

// Sentinel errors. Implementations wrap them; callers test with errors.Is.
var (
	// ErrNotFound: the block or key is not in the store.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: bytes that do not decode, or do not hash to their ID.
	// Such bytes are never returned as data.
	ErrCorrupt = errors.New("corrupt block")
	// ErrConflict: a compare-and-swap found another value than expected.
	ErrConflict = errors.New("conflict")
	// ErrClosed: the store was used after Close.
	ErrClosed = errors.New("store closed")
)

// Block is one framed block and its ID.
type Block struct {
	ID    ID
	Frame []byte
}

// Getter reads blocks.
type Getter interface {
	// Get appends the plain bytes of block id to dst and returns the
	// result. The bytes are verified against id: stored bytes that do not
	// hash to id give an error wrapping ErrCorrupt, never data. An absent
	// block gives an error wrapping ErrNotFound. Get must not be called
	// for Hole. Safe for concurrent use.
	Get(ctx context.Context, id ID, dst []byte) ([]byte, error)
}

// FrameGetter reads blocks in their framed form, for sending them on.
type FrameGetter interface {
	// GetFrame appends the stored frame of block id to dst. Like Get, it
	// verifies the frame against id before returning it.
	GetFrame(ctx context.Context, id ID, dst []byte) ([]byte, error)
}

// Putter stores blocks.
type Putter interface {
	// Put stores the blocks. Each frame must already be verified against
	// its ID (made by Encode, or checked with Open). Putting a block that
	// is present is a no-op. When Put returns nil every block is durable
	// (on stable storage); on error, any subset may be.
	Put(ctx context.Context, blocks ...Block) error
}

// Stager is a Putter that can split a Put in two, for a caller that does
// not need each batch durable on its own (a server taking uploads, whose
// blocks must be durable only before a commit names them): Stage writes
// the blocks' data, and CommitStaged makes the blocks of many Stages
// durable and present at once, with one round of syncs instead of one per
// batch. Until committed, staged blocks are missing (Get and Missing do
// not see them), and a crash loses them.
type Stager interface {
	// Stage writes the data of the blocks the store lacks. The frames
	// must be verified, as for Put, and may be reused once Stage returns.
	Stage(ctx context.Context, blocks ...Block) (Staged, error)
	// CommitStaged makes the staged blocks durable and present. Every
	// Staged must be passed to CommitStaged once, whatever its outcome;
	// on error, any subset of the blocks may be present.
	CommitStaged(ctx context.Context, staged []Staged) error
}

// Staged is what Stager.Stage returns: only the store that made it takes
// it back.
type Staged interface {
	// Blocks is how many blocks were staged (those the store lacked).
	Blocks() int
}

// Checker tells which blocks a store lacks.
type Checker interface {
	// Missing returns the IDs of ids that are not in the store, in the
	// order given. Holes are never missing.
	Missing(ctx context.Context, ids []ID) ([]ID, error)
}

// Deleter removes blocks.
type Deleter interface {
	// Delete removes the blocks; absent ones are ignored.
	Delete(ctx context.Context, ids ...ID) error
}

// Walker lists blocks.
type Walker interface {
	// Walk calls fn for every stored block ID, in no set order, until fn
	// returns an error, which Walk returns. fn must not call the store.
	Walk(ctx context.Context, fn func(ID) error) error
}

// Compressor compresses blocks that were stored in deferred frames
// (EncodeDeferred): plain bytes from a sender whose link was faster than
// its compression.
type Compressor interface {
	// CompressDeferred encodes up to max deferred blocks (Encode: zstd, or
	// raw when zstd does not help) and stores them so, each block
	// replaced atomically and readable throughout. It returns how many it
	// replaced; 0 means none is left.
	CompressDeferred(ctx context.Context, max int) (int, error)
}

// RunGetter reads runs of blocks at once: a sequential reader's request
// spans many blocks, and blocks stored together lie next to each other on
// disk, so one read can fetch them all.
type RunGetter interface {
	// GetRun fills dst, which holds len(ids) blocks of size bytes back to
	// back, with the plain bytes of ids, and sets done[i] for each block
	// it filled, verified against its ID as Get verifies. A block it
	// cannot fill so (absent, of another size, compressed, corrupt, or
	// moved while it was read) is left undone for the caller to Get,
	// which reports why; GetRun's error is for the call as a whole (a
	// closed store, a cancelled context). Safe for concurrent use.
	GetRun(ctx context.Context, ids []ID, size int, dst []byte, done []bool) error
}

// FrameRunGetter reads runs of frames at once, for sending them on: the
// frame counterpart of RunGetter, for a server answering a fetch of
// blocks that were stored together.
type FrameRunGetter interface {
	// GetFrameRun calls fn(i, frame) with the stored frame of ids[i] for
	// each block it can read so, in increasing i, every frame verified
	// against its ID as GetFrame verifies. A block it cannot read so
	// (a hole, absent, corrupt, or moved while it was read) gets no call,
	// and is left for the caller to GetFrame, which reports why. frame is
	// valid only during the call, and fn must not call the store. fn's
	// error stops GetFrameRun, which returns it; any other error is for
	// the call as a whole (a closed store, a cancelled context). Safe for
	// concurrent use.
	GetFrameRun(ctx context.Context, ids []ID, fn func(i int, frame []byte) error) error
}

// Store is a whole block store.
type Store interface {
	Getter
	FrameGetter
	Putter
	Checker
	Deleter
	Walker
	io.Closer
}

// MetaOp is one step of an atomic metadata commit.
type MetaOp struct {
	// Key is the metadata key.
	Key string
	// Value is the new value; nil deletes the key ([]byte{} stores an
	// empty value).
	Value []byte
	// Check makes the commit conditional on the key's current value
	// being Old (nil Old: the key must be absent).
	Check bool
	// Old is the value expected when Check is set.
	Old []byte
}

// MetaStore is a small transactional key-value store for metadata
// (manifests, version pointers, tokens) kept beside the blocks.
type MetaStore interface {
	// GetMeta returns a copy of the value of key, or ErrNotFound.
	GetMeta(ctx context.Context, key string) ([]byte, error)
	// ListMeta calls fn for each key with the prefix, in key order.
	// The value is valid only during the call.
	ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error
	// CommitMeta applies all ops atomically and durably, or none: if any
	// op's Check fails it returns an error wrapping ErrConflict. Ops apply
	// in order: a Check sees the writes of the ops before it.
	CommitMeta(ctx context.Context, ops ...MetaOp) error
}
