// Package s3store is a blockstore.Store over any S3-compatible object
// store, with its index and the caller's metadata in a blockstore.MetaStore.
//
// # Blocks in packs
//
// A block (64 KiB by default) is too small to be an object of its own:
// 100 GB of templates would be 1.6 million objects, and as many PUTs. So
// a Put packs its blocks' frames, back to back and as given, into pack
// objects of up to Config.PackSize (32 MiB by default), each written once
// with one PUT and never modified. The index maps each block ID to its
// pack, the frame's offset and length, and the frame's header; it lives in
// the metadata store (Config.Meta), beside a record of each pack. A Get
// reads the index and then the frame with one ranged GET, and verifies the
// bytes against the ID as every store does (Put's frames are verified by
// the caller, as the Store contract says).
//
// Put is durable when it returns: the pack is written (an S3 PUT returns
// once the object is stored), then the index entries are committed, in one
// metadata transaction per pack. A Put of a few blocks writes a small pack.
// A pack is recorded as pending before it is written and as committed with
// its entries, so that a pack whose Put failed half-way is found and
// removed (Compact, after Config.OrphanAge).
//
// Stage and CommitStaged (blockstore.Stager) let a server that takes many
// small uploads fill whole packs: Stage copies the blocks into an open
// pack in memory, written as soon as it is full; CommitStaged writes it if
// it holds any of its blocks and indexes them all. Staged blocks are
// missing until then, and a crash loses them, as the Stager contract says.
//
// Delete drops index entries only. Compact rewrites the packs whose live
// share has fallen below Config.CompactBelow: it reads each such pack
// with one GET, writes its live, verified frames into new packs, moves
// their entries with compare-and-swap (a block deleted or put again
// meanwhile is left as it is), and only then deletes the old pack object.
// A Get that finds its pack gone reads the index again.
//
// GetRun reads blocks that lie back to back in one pack, as a Put of a
// file's blocks in order writes them, with one ranged GET per run;
// GetFrameRun reads their frames so, for a server's fetch.
//
// One process compacts at a time (a mutex); several servers may compact
// one store at once, with no lease: moves are conditional on the entry
// read, a pack found gone is skipped, an orphan is condemned by a
// conditional write before it is removed, and a Put commits its pack only
// if its record is still its own.
package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/dvfs-project/dvfs/blockstore"
)

var (
	_ blockstore.Store     = (*Store)(nil)
	_ blockstore.MetaStore = (*Store)(nil)
)

// Config says where the store is and how it packs.
type Config struct {
	// Endpoint is the object store's host:port.
	Endpoint string
	// Secure uses HTTPS.
	Secure bool
	// AccessKey and SecretKey are the object store's credentials.
	AccessKey, SecretKey string
	// Region is the bucket's region; empty lets the client ask.
	Region string
	// Bucket holds the packs.
	Bucket string
	// Prefix is put before every object name, to share a bucket.
	Prefix string
	// CreateBucket creates the bucket when it does not exist.
	CreateBucket bool
	// Meta keeps the index and the caller's metadata. The store owns it:
	// Close closes it when it is an io.Closer.
	Meta blockstore.MetaStore
	// PackSize is the largest pack a Put or Compact writes.
	PackSize int64
	// MaxCommitOps is the most ops Meta takes in one commit (etcd's
	// --max-txn-ops); 0 means no limit. A pack then holds at most
	// MaxCommitOps-1 blocks (its entries and its record are one commit),
	// and Delete commits at most MaxCommitOps entries at a time.
	MaxCommitOps int
	// CompactBelow is the live share under which Compact rewrites a pack.
	CompactBelow float64
	// OrphanAge is how old a pending pack (one whose Put never committed)
	// must be before Compact removes it: younger ones may be another
	// server's Put in progress.
	OrphanAge time.Duration
	// Transport carries the HTTP requests; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Logger receives what Compact does; nil discards it.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultPackSize     = 32 << 20
	DefaultCompactBelow = 0.5
	DefaultOrphanAge    = time.Hour
	minPackSize         = 1 << 20
)

func (c Config) withDefaults() Config {
	if c.PackSize == 0 {
		c.PackSize = DefaultPackSize
	}
	if c.CompactBelow == 0 {
		c.CompactBelow = DefaultCompactBelow
	}
	if c.OrphanAge == 0 {
		c.OrphanAge = DefaultOrphanAge
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("no endpoint")
	case c.Bucket == "":
		return errors.New("no bucket")
	case c.Meta == nil:
		return errors.New("no metadata store")
	case c.PackSize < minPackSize || c.PackSize > maxPackSize:
		return fmt.Errorf("pack size %d outside [%d, %d]", c.PackSize, minPackSize, int64(maxPackSize))
	case c.MaxCommitOps < 0 || c.MaxCommitOps == 1:
		return fmt.Errorf("MaxCommitOps %d: a pack needs its record and a block in one commit", c.MaxCommitOps)
	case c.CompactBelow < 0 || c.CompactBelow > 1:
		return fmt.Errorf("CompactBelow %v outside [0, 1]", c.CompactBelow)
	}
	return nil
}

// Store is a block store in an object store.
type Store struct {
	cfg    Config
	client *minio.Client
	meta   blockstore.MetaStore
	log    *slog.Logger

	// mu: every call holds it for reading; Close takes it for writing.
	mu     sync.RWMutex
	closed bool

	// compactMu makes compactions take turns.
	compactMu sync.Mutex
	// stageMu guards open, the pack Stage fills (stage.go).
	stageMu sync.Mutex
	open    *openPack

	// inflight counts, for each pack this process is writing or has
	// staged blocks in, its users: Compact leaves such packs alone.
	inflightMu sync.Mutex
	inflight   map[packID]int

	// afterRecords, when set (by tests), runs in Compact between its
	// listing of the pack records and its listing of the entries.
	afterRecords func()
}

// Open connects to the object store and checks the bucket.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       cfg.Secure,
		Region:       cfg.Region,
		Transport:    cfg.Transport,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("s3store: %w", err)
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3store: bucket %s: %w", cfg.Bucket, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("s3store: bucket %s does not exist", cfg.Bucket)
		}
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("s3store: create bucket %s: %w", cfg.Bucket, err)
		}
	}
	return &Store{cfg: cfg, client: client, meta: cfg.Meta, log: cfg.Logger, inflight: map[packID]int{}}, nil
}

// enter checks ctx and Close and holds the store open; the caller calls
// s.exit.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return blockstore.ErrClosed
	}
	return nil
}

func (s *Store) exit() { s.mu.RUnlock() }

// Close closes the store and its metadata store. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if c, ok := s.meta.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (s *Store) objectName(p packID) string { return s.cfg.Prefix + "packs/" + p.String() }

func newPackID() packID {
	var p packID
	rand.Read(p[:])
	return p
}

// A pack record, the value of packKey: its state, size and birth.
type packRecord struct {
	committed bool
	size      int64
	born      time.Time
}

func appendPackRecord(dst []byte, r packRecord) []byte {
	state := byte(0)
	if r.committed {
		state = 1
	}
	dst = append(dst, state)
	dst = binary.AppendUvarint(dst, uint64(r.size))
	return binary.AppendVarint(dst, r.born.Unix())
}

func decodePackRecord(b []byte) (packRecord, error) {
	var r packRecord
	if len(b) < 1 || b[0] > 1 {
		return r, fmt.Errorf("%w: pack record: bad state", blockstore.ErrCorrupt)
	}
	r.committed = b[0] == 1
	size, k := uvarint(b[1:])
	if k <= 0 || size > maxPackSize {
		return r, fmt.Errorf("%w: pack record: bad size", blockstore.ErrCorrupt)
	}
	born, k2 := binary.Varint(b[1+k:])
	if k2 <= 0 || 1+k+k2 != len(b) || k2 != len(binary.AppendVarint(nil, born)) {
		return r, fmt.Errorf("%w: pack record: bad time", blockstore.ErrCorrupt)
	}
	r.size, r.born = int64(size), time.Unix(born, 0)
	return r, nil
}

// GetMeta implements blockstore.MetaStore.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("s3store: get meta %q: %w", key, err)
	}
	defer s.exit()
	return s.meta.GetMeta(ctx, userPrefix+key)
}

// ListMeta implements blockstore.MetaStore.
func (s *Store) ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: list meta %q: %w", prefix, err)
	}
	defer s.exit()
	return s.meta.ListMeta(ctx, userPrefix+prefix, func(k string, v []byte) error {
		return fn(strings.TrimPrefix(k, userPrefix), v)
	})
}

// CommitMeta implements blockstore.MetaStore.
func (s *Store) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: commit meta: %w", err)
	}
	defer s.exit()
	in := make([]blockstore.MetaOp, len(ops))
	for i, op := range ops {
		op.Key = userPrefix + op.Key
		in[i] = op
	}
	return s.meta.CommitMeta(ctx, in...)
}

// lookup returns the index entry of id, or an error wrapping ErrNotFound.
func (s *Store) lookup(ctx context.Context, id blockstore.ID) (entry, []byte, error) {
	v, err := s.meta.GetMeta(ctx, blockKey(id))
	if err != nil {
		return entry{}, nil, err
	}
	e, err := decodeEntry(v)
	return e, v, err
}

// readFrame reads id's frame with one ranged GET, reading the index again
// when the pack has gone (compacted away under the reader).
func (s *Store) readFrame(ctx context.Context, id blockstore.ID) ([]byte, error) {
	e, _, err := s.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		frame, err := s.readRange(ctx, e.pack, e.off, e.n)
		if err == nil {
			if !bytes.HasPrefix(frame, e.header) {
				return nil, fmt.Errorf("%w: frame in pack %s does not start with its indexed header", blockstore.ErrCorrupt, e.pack)
			}
			return frame, nil
		}
		if !isNoSuchKey(err) || attempt == 3 {
			return nil, err
		}
		e2, _, err2 := s.lookup(ctx, id)
		if err2 != nil {
			return nil, err2
		}
		if e2.pack == e.pack {
			return nil, fmt.Errorf("%w: pack %s of the block is missing", blockstore.ErrCorrupt, e.pack)
		}
		e = e2
	}
}

func (s *Store) readRange(ctx context.Context, p packID, off, n int64) ([]byte, error) {
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(off, off+n-1); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.objectName(p), opts)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	buf := make([]byte, n)
	if _, err := io.ReadFull(obj, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: pack %s is shorter than its index says", blockstore.ErrCorrupt, p)
		}
		return nil, err
	}
	// Read to the end, so that the connection goes back to the pool.
	if k, _ := io.Copy(io.Discard, obj); k != 0 {
		return nil, fmt.Errorf("%w: pack %s sent more than the range asked", blockstore.ErrCorrupt, p)
	}
	return buf, nil
}

func isNoSuchKey(err error) bool {
	return minio.ToErrorResponse(err).Code == "NoSuchKey"
}

// Get implements blockstore.Getter.
func (s *Store) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("s3store: get %s: %w", id.Short(), err)
	}
	defer s.exit()
	frame, err := s.readFrame(ctx, id)
	if err != nil {
		return dst, fmt.Errorf("s3store: get %s: %w", id.Short(), err)
	}
	out, err := blockstore.Open(id, frame, dst)
	if err != nil {
		return dst, fmt.Errorf("s3store: get: %w", err)
	}
	return out, nil
}

// GetFrame implements blockstore.FrameGetter.
func (s *Store) GetFrame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("s3store: get frame %s: %w", id.Short(), err)
	}
	defer s.exit()
	frame, err := s.readFrame(ctx, id)
	if err != nil {
		return dst, fmt.Errorf("s3store: get frame %s: %w", id.Short(), err)
	}
	if err := blockstore.Verify(id, frame); err != nil {
		return dst, fmt.Errorf("s3store: get frame: %w", err)
	}
	return append(dst, frame...), nil
}

// Missing implements blockstore.Checker.
func (s *Store) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("s3store: missing: %w", err)
	}
	defer s.exit()
	return s.missing(ctx, ids)
}

func (s *Store) missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	var out []blockstore.ID
	for _, id := range ids {
		if id.IsHole() {
			continue
		}
		_, err := s.meta.GetMeta(ctx, blockKey(id))
		switch {
		case errors.Is(err, blockstore.ErrNotFound):
			out = append(out, id)
		case err != nil:
			return nil, fmt.Errorf("s3store: missing: %w", err)
		}
	}
	return out, nil
}

// Walk implements blockstore.Walker.
func (s *Store) Walk(ctx context.Context, fn func(blockstore.ID) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: walk: %w", err)
	}
	defer s.exit()
	return s.meta.ListMeta(ctx, blockPrefix, func(k string, _ []byte) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("s3store: walk: %w", err)
		}
		var id blockstore.ID
		if len(k) != len(blockPrefix)+len(id) {
			return fmt.Errorf("s3store: walk: %w: index key of %d bytes", blockstore.ErrCorrupt, len(k))
		}
		copy(id[:], k[len(blockPrefix):])
		return fn(id)
	})
}

// Delete implements blockstore.Deleter: it drops the index entries; the
// space comes back when Compact rewrites the packs.
func (s *Store) Delete(ctx context.Context, ids ...blockstore.ID) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: delete: %w", err)
	}
	defer s.exit()
	var ops []blockstore.MetaOp
	for _, id := range ids {
		if !id.IsHole() {
			ops = append(ops, blockstore.MetaOp{Key: blockKey(id)})
		}
	}
	for len(ops) > 0 {
		n := len(ops)
		if s.cfg.MaxCommitOps > 0 {
			n = min(n, s.cfg.MaxCommitOps)
		}
		if err := s.meta.CommitMeta(ctx, ops[:n]...); err != nil {
			return fmt.Errorf("s3store: delete: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

// packFull says whether a pack of n blocks and size bytes can take no
// frame of next bytes more.
func (s *Store) packFull(n int, size, next int64) bool {
	return size+next > s.cfg.PackSize || s.cfg.MaxCommitOps > 0 && n >= s.cfg.MaxCommitOps-1
}
