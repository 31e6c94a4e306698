// Package etcdmeta is a blockstore.MetaStore in an etcd cluster, so that
// several dvfs servers can share one repository's metadata (and, with
// s3store, its block index).
//
// # Keys and commits
//
// Every key lives under Config.Prefix, so one cluster can hold several
// repositories. CommitMeta is one etcd transaction: its Checks become
// compares (on the value, or CreateRevision == 0 for "absent"), its writes
// the transaction's puts and deletes, and etcd applies them all at one
// revision, durably (a quorum has the entry in its log), or none. A Check
// of a key that an earlier op of the same commit writes is decided here,
// against that write, since the ops apply in order; two writes of one key
// leave only the last.
//
// # Reads
//
// GetMeta and ListMeta are linearizable reads: they see every commit
// acknowledged before they started, whichever server made it. ListMeta
// reads in pages of at most Config.PageSize keys (fewer when values are
// large: about 4 MiB a page), in key order, all at the revision of the
// first page, so it lists one consistent snapshot. A listing that
// outlives etcd's history (a compaction passed its revision) fails
// rather than mix two snapshots.
//
// # Limits
//
// etcd refuses a transaction of more than --max-txn-ops writes (or
// compares; 128 by default) or of more than --max-request-bytes (1.5 MiB
// by default). Such a commit fails as a whole with an error wrapping
// ErrTooLarge that names the flag. Config.MaxTxnOps and MaxRequestBytes
// tell the client the cluster's settings: it refuses a commit over
// MaxTxnOps before sending it, and accepts answers and requests that
// large. What dvfs commits at once, and so what the cluster needs, is in
// DESIGN.md ("Metadata in etcd").
//
// # Failures
//
// The client balances over all of Config.Endpoints and moves to another
// member when one goes away; a read is retried there. A commit whose
// member fails while it is in flight may or may not have been applied:
// CommitMeta then returns an error (never ErrConflict), as any store does
// whose disk fails during a write, and the caller reads again to know.
package etcdmeta

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.MetaStore = (*Store)(nil)

// ErrTooLarge: a commit is over the cluster's limits (--max-txn-ops,
// --max-request-bytes). Nothing of it was applied.
var ErrTooLarge = errors.New("commit too large for etcd")

// Config says where the cluster is and what it allows.
type Config struct {
	// Endpoints are the members' client addresses (host:port, or URLs
	// with http:// or https://). The client balances over them all.
	Endpoints []string
	// Prefix is put before every key; several repositories can share
	// one cluster under different prefixes.
	Prefix string
	// Username and Password authenticate to etcd when set.
	Username, Password string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// DialTimeout bounds Open's first connection.
	DialTimeout time.Duration
	// Timeout bounds each request (a Get, a page of a listing, a commit)
	// that the caller's context does not bound sooner: without a quorum
	// a request fails after it instead of waiting.
	Timeout time.Duration
	// MaxTxnOps is the cluster's --max-txn-ops: a commit with more
	// writes or checks is refused before it is sent.
	MaxTxnOps int
	// MaxRequestBytes is the cluster's --max-request-bytes: the largest
	// request the client sends and the largest answer it takes.
	MaxRequestBytes int
	// PageSize is the most keys one request of ListMeta reads (fewer
	// when the values are large).
	PageSize int64
	// Logger is told of each commit whose outcome is unknown (its member
	// failed while it was in flight); nil discards it. The etcd client's
	// own log is discarded.
	Logger *slog.Logger
}

// Defaults: etcd's own limits, and the timeouts and page size used when
// Config leaves them zero.
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1536 * 1024
	DefaultDialTimeout     = 10 * time.Second
	DefaultTimeout         = 30 * time.Second
	DefaultPageSize        = 1000
	// firstPage is how many keys ListMeta's first request reads, and
	// pageBytes how many bytes it aims each later one at.
	firstPage = 1
	pageBytes = 4 << 20
	// grpcOverhead is what etcd adds to --max-request-bytes for the
	// gRPC framing of a request of that size.
	grpcOverhead = 512 * 1024
)

func (c Config) withDefaults() Config {
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("no endpoints")
	case c.MaxTxnOps < 1:
		return fmt.Errorf("MaxTxnOps %d < 1", c.MaxTxnOps)
	case c.MaxRequestBytes < 1:
		return fmt.Errorf("MaxRequestBytes %d < 1", c.MaxRequestBytes)
	case c.PageSize < 1:
		return fmt.Errorf("PageSize %d < 1", c.PageSize)
	case c.Timeout < 0 || c.DialTimeout < 0:
		return errors.New("negative timeout")
	}
	return nil
}

// Store is a metadata store in etcd.
type Store struct {
	cfg    Config
	cli    *clientv3.Client
	closed atomic.Bool

	// onPage, when set (by tests), is told the keys and bytes of each
	// page ListMeta reads.
	onPage func(keys, bytes int)
}

// Open connects to the cluster and checks that it answers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("etcdmeta: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          cfg.Endpoints,
		DialTimeout:        cfg.DialTimeout,
		DialKeepAliveTime:  10 * time.Second,
		Username:           cfg.Username,
		Password:           cfg.Password,
		TLS:                cfg.TLS,
		MaxCallSendMsgSize: cfg.MaxRequestBytes + grpcOverhead,
		MaxCallRecvMsgSize: 0, // no limit: a page of large values
		Context:            context.WithoutCancel(ctx),
		Logger:             zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdmeta: connect to %v: %w", cfg.Endpoints, err)
	}
	s := &Store{cfg: cfg, cli: cli}
	// The client dials lazily; a Get shows the cluster has a quorum.
	rctx, cancel := s.request(ctx)
	defer cancel()
	if _, err := cli.Get(rctx, s.cfg.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcdmeta: cluster %v: %w", cfg.Endpoints, err)
	}
	return s, nil
}

// Close closes the connections. It is idempotent.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.cli.Close()
}

// request bounds one request by Config.Timeout.
func (s *Store) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// check fails when the store is closed or ctx is done.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return blockstore.ErrClosed
	}
	return ctx.Err()
}

// wrap gives err the sentinel a caller checks for: ErrClosed after Close,
// the context's error when it ended, ErrTooLarge for etcd's limits.
func (s *Store) wrap(ctx context.Context, err error) error {
	switch {
	case s.closed.Load():
		return fmt.Errorf("%w (%v)", blockstore.ErrClosed, err)
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrTooManyOps.Error():
		return fmt.Errorf("%w: more ops than the cluster's --max-txn-ops (%v)", ErrTooLarge, err)
	case rpctypes.ErrRequestTooLarge.Error():
		return fmt.Errorf("%w: more bytes than the cluster's --max-request-bytes (%v)", ErrTooLarge, err)
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
		return fmt.Errorf("%w: over the gRPC message limit, set from MaxRequestBytes (%d) (%v)", ErrTooLarge, s.cfg.MaxRequestBytes, err)
	}
	return err
}

// GetMeta implements blockstore.MetaStore.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("etcdmeta: get %q: %w", key, err)
	}
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.cli.Get(rctx, s.cfg.Prefix+key)
	if err != nil {
		return nil, fmt.Errorf("etcdmeta: get %q: %w", key, s.wrap(ctx, err))
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdmeta: get %q: %w", key, blockstore.ErrNotFound)
	}
	return append([]byte{}, resp.Kvs[0].Value...), nil
}

// ListMeta implements blockstore.MetaStore.
func (s *Store) ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	_, err := s.list(ctx, prefix, false, fn)
	return err
}

// list is ListMeta; it also returns the revision it listed at. With
// keysOnly, fn gets no values (nil).
func (s *Store) list(ctx context.Context, prefix string, keysOnly bool, fn func(key string, value []byte) error) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, fmt.Errorf("etcdmeta: list %q: %w", prefix, err)
	}
	from := s.cfg.Prefix + prefix
	end := clientv3.GetPrefixRangeEnd(from)
	if from == "" {
		from = "\x00" // etcd's whole key space
	}
	var rev int64
	// The first page is one key, the next ones sized to pageBytes by
	// the last page's values: a prefix of manifests (megabytes each) must
	// not come back as one answer of gigabytes.
	limit := min(firstPage, s.cfg.PageSize)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(limit),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		rctx, cancel := s.request(ctx)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				err = fmt.Errorf("the listing's revision %d was compacted before it ended: %w", rev, err)
			}
			return 0, fmt.Errorf("etcdmeta: list %q: %w", prefix, s.wrap(ctx, err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		size := 0
		for _, kv := range resp.Kvs {
			size += len(kv.Key) + len(kv.Value)
		}
		if s.onPage != nil {
			s.onPage(len(resp.Kvs), size)
		}
		if len(resp.Kvs) > 0 {
			limit = int64(max(1, pageBytes/max(1, size/len(resp.Kvs))))
			limit = min(limit, s.cfg.PageSize)
		}
		for _, kv := range resp.Kvs {
			if err := ctx.Err(); err != nil {
				return 0, fmt.Errorf("etcdmeta: list %q: %w", prefix, err)
			}
			k := string(kv.Key)
			v := kv.Value
			if v == nil && !keysOnly {
				v = []byte{}
			}
			if err := fn(k[len(s.cfg.Prefix):], v); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// CommitMeta implements blockstore.MetaStore.
func (s *Store) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if err := s.check(ctx); err != nil {
		return fmt.Errorf("etcdmeta: commit: %w", err)
	}
	txn, err := s.plan(ops)
	if err != nil {
		return fmt.Errorf("etcdmeta: commit: %w", err)
	}
	if len(txn.writes) == 0 && len(txn.cmps) == 0 {
		return nil
	}
	rctx, cancel := s.request(ctx)
	defer cancel()
	resp, err := s.cli.Txn(rctx).If(txn.cmps...).Then(txn.writes...).Commit()
	if err != nil {
		err = s.wrap(ctx, err)
		if !errors.Is(err, ErrTooLarge) && !errors.Is(err, blockstore.ErrClosed) && ctx.Err() == nil {
			s.cfg.Logger.Warn("etcdmeta: commit failed; it may or may not have been applied", "ops", len(ops), "err", err)
		}
		return fmt.Errorf("etcdmeta: commit of %d ops: %w", len(ops), err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcdmeta: commit: a checked key has another value: %w", blockstore.ErrConflict)
	}
	return nil
}

// txn is a commit as etcd takes it.
type txn struct {
	cmps   []clientv3.Cmp
	writes []clientv3.Op
}

// plan turns ops into one transaction: Checks of keys not yet written by
// the commit become compares, those of keys it wrote are decided here
// (a failing one is a conflict at once), and each key is written once,
// with its last value.
func (s *Store) plan(ops []blockstore.MetaOp) (txn, error) {
	type write struct {
		value []byte
		at    int // index in writes
	}
	var (
		t       txn
		written = map[string]write{}
	)
	for _, op := range ops {
		key := s.cfg.Prefix + op.Key
		if key == "" {
			return t, errors.New("empty key")
		}
		if op.Check {
			if w, ok := written[key]; ok {
				if (w.value == nil) != (op.Old == nil) || !bytes.Equal(w.value, op.Old) {
					return t, fmt.Errorf("check of %q after the commit's own write of it: %w", op.Key, blockstore.ErrConflict)
				}
			} else if op.Old == nil {
				t.cmps = append(t.cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
			} else {
				// A value compare fails on an absent key, so an empty
				// Old needs the key present, as it should.
				t.cmps = append(t.cmps, clientv3.Compare(clientv3.Value(key), "=", string(op.Old)))
			}
		}
		var w clientv3.Op
		var v []byte
		if op.Value == nil {
			w = clientv3.OpDelete(key)
		} else {
			v = bytes.Clone(op.Value)
			if v == nil {
				v = []byte{}
			}
			w = clientv3.OpPut(key, string(v))
		}
		if prev, ok := written[key]; ok {
			t.writes[prev.at] = w
			written[key] = write{value: v, at: prev.at}
		} else {
			written[key] = write{value: v, at: len(t.writes)}
			t.writes = append(t.writes, w)
		}
	}
	if n := max(len(t.writes), len(t.cmps)); n > s.cfg.MaxTxnOps {
		return t, fmt.Errorf("%w: %d ops over MaxTxnOps %d (the cluster's --max-txn-ops)", ErrTooLarge, n, s.cfg.MaxTxnOps)
	}
	return t, nil
}
