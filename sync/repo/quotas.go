package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Per-user quotas on clone data, set by an admin; a user without one has
// Config.CloneQuota.
//
//	quo/USER   JSON quotaRecord
const prefixQuotas = "quo/"

func quotaKey(user string) string { return prefixQuotas + user }

type quotaRecord struct {
	Bytes int64 `json:"bytes"` // 0: no bound
}

// quotas caches the records read so far: every upload asks.
type quotas struct {
	mu  sync.Mutex
	set map[string]int64 // a user's own quota; absent: not read yet
	own map[string]bool  // whether the user has a record
}

// SetQuota sets user's quota on clone data to bytes (0: no bound). With
// useDefault, it drops the user's own quota instead: Config.CloneQuota
// applies again. A quota below what the user holds refuses their next
// upload or commit that adds data; nothing held is taken away.
func (r *Repo) SetQuota(ctx context.Context, user string, bytes int64, useDefault bool) error {
	if err := validOwner(user); err != nil {
		return err
	}
	if bytes < 0 {
		return fmt.Errorf("%w: a quota of %d bytes", ErrInvalid, bytes)
	}
	op := blockstore.MetaOp{Key: quotaKey(user)}
	if !useDefault {
		op.Value, _ = json.Marshal(quotaRecord{Bytes: bytes})
	}
	q := &r.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := r.store.CommitMeta(ctx, op); err != nil {
		return err
	}
	q.init()
	q.set[user], q.own[user] = bytes, !useDefault
	if useDefault {
		q.set[user] = r.cloneQuota
	}
	r.log.Info("set clone quota", "user", user, "bytes", q.set[user], "default", useDefault)
	return nil
}

func (q *quotas) init() {
	if q.set == nil {
		q.set, q.own = make(map[string]int64), make(map[string]bool)
	}
}

// quotaOf returns user's quota on clone data (0: none) and whether it is
// the user's own rather than the default.
func (r *Repo) quotaOf(ctx context.Context, user string) (int64, bool, error) {
	q := &r.quotas
	q.mu.Lock()
	defer q.mu.Unlock()
	q.init()
	if b, ok := q.set[user]; ok {
		return b, q.own[user], nil
	}
	v, err := r.store.GetMeta(ctx, quotaKey(user))
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		q.set[user], q.own[user] = r.cloneQuota, false
	case err != nil:
		return 0, false, err
	default:
		var rec quotaRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return 0, false, fmt.Errorf("quota record of %s: %w", user, err)
		}
		q.set[user], q.own[user] = rec.Bytes, true
	}
	return q.set[user], q.own[user], nil
}

// Quota reports user's quota and usage of clone data.
func (r *Repo) Quota(ctx context.Context, user string) (api.QuotaInfo, error) {
	info := api.QuotaInfo{User: user}
	if err := validOwner(user); err != nil {
		return info, err
	}
	quota, own, err := r.quotaOf(ctx, user)
	if err != nil {
		return info, err
	}
	now, _, err := r.privateBlocks(ctx, user, nil)
	if err != nil {
		return info, err
	}
	info.Quota, info.Default = quota, !own
	info.Used = int64(now) * blockstore.DefaultBlockSize
	info.Pending = r.Pending(user)
	return info, nil
}

// quotaRoom fails with ErrQuota when naming ids would take owner's clone
// data past their quota. what says what asked ("upload", "commit").
func (r *Repo) quotaRoom(ctx context.Context, owner, what string, ids []blockstore.ID) error {
	quota, _, err := r.quotaOf(ctx, owner)
	if err != nil || quota <= 0 {
		return err
	}
	now, with, err := r.privateBlocks(ctx, owner, ids)
	if err != nil {
		return err
	}
	if with > now && int64(with)*blockstore.DefaultBlockSize > quota {
		return fmt.Errorf("%w: %s refused: %s's clones hold %d bytes of their own; %d more would pass %s's quota of %d bytes (remove clones, or ask an admin: dvfs quota set %s SIZE)",
			ErrQuota, what, owner, int64(now)*blockstore.DefaultBlockSize, int64(with-now)*blockstore.DefaultBlockSize, owner, quota, owner)
	}
	return nil
}
