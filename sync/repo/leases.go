package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Leases. A clone is writable on one workstation at a time: the holder of
// its lease. The lease record outlives the lease (an empty holder), so the
// epoch only ever grows.
//
//	cln/OWNER/NAME/lease   JSON api.Lease

// ErrLeased: another holder has the clone's lease.
var ErrLeased = errors.New("clone is leased to another workstation")

// ErrFenced: a commit or release carries an epoch that is no longer the
// lease's: the lease was taken over.
var ErrFenced = errors.New("lease epoch is stale (the lease was taken over)")

// LeaseError says who holds the lease.
type LeaseError struct {
	Lease api.Lease
}

func (e *LeaseError) Error() string {
	return fmt.Sprintf("%v: %s holds it until %s", ErrLeased, e.Lease.Holder, e.Lease.Expires.Format(time.RFC3339))
}

func (e *LeaseError) Unwrap() error { return ErrLeased }

func leaseKey(owner, name string) string { return clonePrefix(owner, name) + "lease" }

// MaxLeaseTTL bounds a lease's TTL.
const MaxLeaseTTL = time.Hour

func (r *Repo) lease(ctx context.Context, owner, name string) (api.Lease, []byte, error) {
	var l api.Lease
	b, err := r.store.GetMeta(ctx, leaseKey(owner, name))
	if errors.Is(err, blockstore.ErrNotFound) {
		return l, nil, nil
	}
	if err != nil {
		return l, nil, err
	}
	return l, b, json.Unmarshal(b, &l)
}

// AcquireLease grants holder the lease of owner's clone for ttl, or renews
// it when holder has it already (same epoch). When another holder has a
// live lease it fails with a *LeaseError unless force is set; a new
// holder, forced or not, gets the next epoch.
func (r *Repo) AcquireLease(ctx context.Context, owner, name, holder string, ttl time.Duration, force bool) (api.Lease, error) {
	if holder == "" || len(holder) > 256 {
		return api.Lease{}, fmt.Errorf("%w: a lease needs a holder name of 1-256 bytes", ErrInvalid)
	}
	if ttl <= 0 || ttl > MaxLeaseTTL {
		return api.Lease{}, fmt.Errorf("%w: lease TTL %s is not in (0, %s]", ErrInvalid, ttl, MaxLeaseTTL)
	}
	if _, err := r.Clone(ctx, owner, name); err != nil {
		return api.Lease{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var cur, next api.Lease
	var now time.Time
	for attempt := 0; ; attempt++ {
		var old []byte
		var err error
		cur, old, err = r.lease(ctx, owner, name)
		if err != nil {
			return api.Lease{}, err
		}
		now = r.now().UTC()
		next = api.Lease{Holder: holder, Epoch: cur.Epoch, Expires: now.Add(ttl)}
		switch {
		case cur.Holder == holder && cur.Epoch > 0:
			// Renewal (also after expiry, if nobody took it meanwhile).
		case cur.Holder != "" && now.Before(cur.Expires) && !force:
			r.leaseEvents.add("refused")
			return cur, &LeaseError{Lease: cur}
		default:
			next.Epoch = cur.Epoch + 1
		}
		b, err := json.Marshal(next)
		if err != nil {
			return api.Lease{}, err
		}
		err = r.store.CommitMeta(ctx, blockstore.MetaOp{Key: leaseKey(owner, name), Value: b, Check: true, Old: old})
		if errors.Is(err, blockstore.ErrConflict) && attempt < casRetries {
			continue // granted or renewed through another server meanwhile: decide again
		}
		if err != nil {
			return api.Lease{}, err
		}
		break
	}
	switch {
	case next.Epoch == cur.Epoch:
		r.leaseEvents.add("renewed")
	case cur.Holder != "" && cur.Holder != holder && now.Before(cur.Expires):
		r.leaseEvents.add("taken_over")
	default:
		r.leaseEvents.add("granted")
	}
	if next.Epoch != cur.Epoch {
		r.log.Info("granted clone lease", "clone", name, "owner", owner, "holder", holder, "epoch", next.Epoch,
			"taken_from", cur.Holder, "forced", force && cur.Holder != "" && now.Before(cur.Expires))
	}
	return next, nil
}

// ReleaseLease gives the lease back; the epoch stays. Releasing a lease one
// no longer holds is ErrFenced.
func (r *Repo) ReleaseLease(ctx context.Context, owner, name, holder string, epoch uint64) error {
	// Only a clone has a lease: no record for one that does not exist.
	if _, err := r.Clone(ctx, owner, name); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		cur, old, err := r.lease(ctx, owner, name)
		if err != nil {
			return err
		}
		if cur.Holder == "" || cur.Holder != holder || cur.Epoch != epoch {
			r.leaseEvents.add("fenced")
			return fmt.Errorf("release %s: %w", name, ErrFenced)
		}
		b, _ := json.Marshal(api.Lease{Epoch: cur.Epoch})
		err = r.store.CommitMeta(ctx, blockstore.MetaOp{Key: leaseKey(owner, name), Value: b, Check: true, Old: old})
		if errors.Is(err, blockstore.ErrConflict) && attempt < casRetries {
			continue // renewed or taken through another server meanwhile
		}
		if err != nil {
			return err
		}
		r.leaseEvents.add("released")
		return nil
	}
}

// casRetries bounds how often a lease change or a commit reads again and
// retries after its compare-and-swap found the record changed: with
// several servers over one metadata store (etcd), another server may
// change it between the read and the commit. r.mu orders the changes one
// server makes.
const casRetries = 8

// checkEpoch fails with ErrFenced unless epoch is the lease's current one,
// and returns the lease's record. The caller holds r.mu.
func (r *Repo) checkEpoch(ctx context.Context, owner, name string, epoch uint64) ([]byte, error) {
	cur, b, err := r.lease(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	if epoch == 0 || cur.Epoch != epoch {
		return nil, fmt.Errorf("clone %s: commit with epoch %d, lease is at %d: %w", name, epoch, cur.Epoch, ErrFenced)
	}
	return b, nil
}
