package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Several servers over one metadata store and one block store must not
// commit while one of them collects garbage: a collection deletes what the
// manifests it read do not name, so a manifest committed through another
// server meanwhile could name a block it deletes. One server's commits wait
// for its own collection (r.mu); across servers, a collection holds the
// record gcKey, and every commit that names blocks checks in its
// transaction that no live collection holds it, else fails with
// ErrCollecting (the client retries, as when the server is busy). The
// record expires, so a server that died collecting stops no one for
// longer than gcHold; a collection renews it before it deletes.
const gcKey = "gc/run"

// gcHold is how long a collection's record lasts without renewal.
const gcHold = 10 * time.Minute

// ErrCollecting: another server collects garbage; retry the commit soon.
var ErrCollecting = errors.New("the repository is collecting garbage through another server; retry shortly")

type gcRecord struct {
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

// gcFence returns the op a commit that names blocks carries: a check that
// no live collection holds gcKey. It fails with ErrCollecting when one
// does.
func (r *Repo) gcFence(ctx context.Context) (blockstore.MetaOp, error) {
	cur, rec, err := r.gcRecord(ctx)
	if err != nil {
		return blockstore.MetaOp{}, err
	}
	if cur != nil && r.now().Before(rec.Expires) && rec.Holder != r.gcID {
		return blockstore.MetaOp{}, ErrCollecting
	}
	// Unchanged: absent stays absent (nil Value deletes nothing), an
	// expired record stays as it is.
	return blockstore.MetaOp{Key: gcKey, Value: cur, Check: true, Old: cur}, nil
}

func (r *Repo) gcRecord(ctx context.Context) ([]byte, gcRecord, error) {
	var rec gcRecord
	b, err := r.store.GetMeta(ctx, gcKey)
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, rec, nil
	}
	if err != nil {
		return nil, rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, rec, fmt.Errorf("collection record: %w", err)
	}
	return b, rec, nil
}

// holdGC takes (or renews) gcKey for this server's collection. It fails
// with ErrCollecting when another server's live collection holds it.
func (r *Repo) holdGC(ctx context.Context) error {
	cur, rec, err := r.gcRecord(ctx)
	if err != nil {
		return err
	}
	if cur != nil && r.now().Before(rec.Expires) && rec.Holder != r.gcID {
		return ErrCollecting
	}
	b, err := json.Marshal(gcRecord{Holder: r.gcID, Expires: r.now().Add(gcHold)})
	if err != nil {
		return err
	}
	err = r.store.CommitMeta(ctx, blockstore.MetaOp{Key: gcKey, Value: b, Check: true, Old: cur})
	if errors.Is(err, blockstore.ErrConflict) {
		return ErrCollecting // another server took it meanwhile
	}
	return err
}

// releaseGC gives gcKey back, if this server still holds it.
func (r *Repo) releaseGC(ctx context.Context) {
	cur, rec, err := r.gcRecord(ctx)
	if err != nil || cur == nil || rec.Holder != r.gcID {
		return
	}
	if err := r.store.CommitMeta(ctx, blockstore.MetaOp{Key: gcKey, Check: true, Old: cur}); err != nil {
		r.log.Warn("could not release the collection record; it expires by itself", "err", err, "expires", rec.Expires)
	}
}

func newGCID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
