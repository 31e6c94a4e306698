package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Snapshots name generations:
//
//	cln/OWNER/NAME/s/SNAP   JSON api.SnapshotInfo

func snapshotKey(owner, name, snap string) string { return clonePrefix(owner, name) + "s/" + snap }

// CommitGeneration makes m the clone's next generation, as a compare-and-
// swap: parent must be the clone's latest generation and epoch its lease's
// current epoch. Blocks first: every block m names must be stored. A
// stale parent is an error wrapping blockstore.ErrConflict; a stale epoch
// ErrFenced; in both cases nothing changes.
func (r *Repo) CommitGeneration(ctx context.Context, owner string, m *manifest.Manifest, parent, epoch uint64) (api.CloneInfo, error) {
	var info api.CloneInfo
	if err := validOwner(owner); err != nil {
		return info, err
	}
	m.Kind, m.Version, m.Parent = manifest.KindClone, parent+1, parent
	if err := m.Validate(); err != nil {
		return info, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ids := slices.Collect(m.BlockIDs())
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitGenerationLocked(ctx, owner, m, ids, parent, epoch)
}

func (r *Repo) commitGenerationLocked(ctx context.Context, owner string, m *manifest.Manifest, ids []blockstore.ID, parent, epoch uint64) (info api.CloneInfo, err error) {
	defer func() { r.countCommit("generation", err) }()
	for attempt := 0; ; attempt++ {
		lease, err := r.checkEpoch(ctx, owner, m.Name, epoch)
		if err != nil {
			return info, err
		}
		oldInfo, err := r.store.GetMeta(ctx, cloneInfoKey(owner, m.Name))
		if errors.Is(err, blockstore.ErrNotFound) {
			return info, fmt.Errorf("clone %q: %w", m.Name, ErrNotFound)
		}
		if err != nil {
			return info, err
		}
		if err := json.Unmarshal(oldInfo, &info); err != nil {
			return info, err
		}
		if info.Generation != parent {
			return info, fmt.Errorf("clone %s: commit on generation %d, latest is %d: %w", m.Name, parent, info.Generation, blockstore.ErrConflict)
		}
		if attempt == 0 {
			if err := r.blocksFit(ctx, owner, "commit", ids); err != nil {
				return info, err
			}
		}
		now := r.now().UTC()
		m.Version, m.Parent, m.Created = parent+1, parent, now
		body, err := m.MarshalBinary()
		if err != nil {
			return info, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		info.Generation, info.Updated, info.Bytes = m.Version, now, m.Stats().Bytes
		infoJSON, err := json.Marshal(info)
		if err != nil {
			return info, err
		}
		// The lease record, unchanged, is part of the transaction: with
		// several servers over one metadata store, a takeover granted by
		// another between the epoch check and this commit makes the
		// commit fail, so a fenced holder never commits.
		fence, err := r.gcFence(ctx)
		if err != nil {
			return info, err
		}
		ops := []blockstore.MetaOp{
			fence,
			{Key: leaseKey(owner, m.Name), Value: lease, Check: true, Old: lease},
			{Key: cloneInfoKey(owner, m.Name), Value: infoJSON, Check: true, Old: oldInfo},
			{Key: cloneGenKey(owner, m.Name, m.Version), Value: manifest.Sign(body, r.key), Check: true},
			r.revOp(revOwner(owner)),
		}
		for _, k := range groupRevs(info.Shared) {
			ops = append(ops, r.revOp(k))
		}
		err = r.store.CommitMeta(ctx, ops...)
		if errors.Is(err, blockstore.ErrConflict) && attempt < casRetries {
			// Something changed meanwhile (a renewal, a takeover, a
			// commit through another server): check again.
			continue
		}
		if err != nil {
			return info, err
		}
		break
	}
	r.committed(ids)
	// Only fails when the set is not built; its build reads this commit.
	_ = r.grant(ctx, owner, ids)
	// Members of the groups it is shared with read this generation now.
	r.dropGroups(info.Shared...)
	r.log.Debug("committed clone generation", "clone", m.Name, "owner", owner, "generation", m.Version, "epoch", epoch)
	return info, nil
}

// GenerationSigned returns the signed manifest of one generation.
func (r *Repo) GenerationSigned(ctx context.Context, owner, name string, gen uint64) ([]byte, error) {
	b, err := r.store.GetMeta(ctx, cloneGenKey(owner, name, gen))
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, fmt.Errorf("clone %s generation %d: %w", name, gen, ErrNotFound)
	}
	return b, err
}

// Snapshot names the clone's latest generation.
func (r *Repo) Snapshot(ctx context.Context, owner, name, snap string) (api.SnapshotInfo, error) {
	var si api.SnapshotInfo
	if err := manifest.ValidName(snap); err != nil {
		return si, fmt.Errorf("%w: snapshot name: %v", ErrInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info, err := r.Clone(ctx, owner, name)
	if err != nil {
		return si, err
	}
	si = api.SnapshotInfo{Name: snap, Generation: info.Generation, Created: r.now().UTC()}
	b, _ := json.Marshal(si)
	err = r.store.CommitMeta(ctx, blockstore.MetaOp{Key: snapshotKey(owner, name, snap), Value: b, Check: true})
	if errors.Is(err, blockstore.ErrConflict) {
		return si, fmt.Errorf("snapshot %q of %s: %w", snap, name, ErrExists)
	}
	return si, err
}

// Revert makes the tree of snapshot snap the clone's next generation. The
// holder must hold the clone's lease, or take it here when nobody does.
func (r *Repo) Revert(ctx context.Context, owner, name, snap, holder string) (api.CloneInfo, error) {
	if err := manifest.ValidName(snap); err != nil {
		return api.CloneInfo{}, fmt.Errorf("%w: snapshot name: %v", ErrInvalid, err)
	}
	lease, err := r.AcquireLease(ctx, owner, name, holder, MaxLeaseTTL, false)
	if err != nil {
		return api.CloneInfo{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.store.GetMeta(ctx, snapshotKey(owner, name, snap))
	if errors.Is(err, blockstore.ErrNotFound) {
		return api.CloneInfo{}, fmt.Errorf("snapshot %q of %s: %w", snap, name, ErrNotFound)
	}
	if err != nil {
		return api.CloneInfo{}, err
	}
	var si api.SnapshotInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return api.CloneInfo{}, err
	}
	signed, err := r.GenerationSigned(ctx, owner, name, si.Generation)
	if err != nil {
		return api.CloneInfo{}, err
	}
	m, _, err := manifest.Open(signed, r.PublicKey())
	if err != nil {
		return api.CloneInfo{}, err
	}
	info, err := r.Clone(ctx, owner, name)
	if err != nil {
		return api.CloneInfo{}, err
	}
	ids := slices.Collect(m.BlockIDs())
	out, err := r.commitGenerationLocked(ctx, owner, m, ids, info.Generation, lease.Epoch)
	if err == nil {
		r.log.Info("reverted clone to snapshot", "clone", name, "owner", owner, "snapshot", snap, "generation", out.Generation)
	}
	return out, err
}

// History lists a clone's generations and snapshots.
func (r *Repo) History(ctx context.Context, owner, name string) (api.CloneHistory, error) {
	var h api.CloneHistory
	info, err := r.Clone(ctx, owner, name)
	if err != nil {
		return h, err
	}
	h.Clone = info
	if l, _, err := r.lease(ctx, owner, name); err == nil && l.Holder != "" {
		h.Lease = &l
	}
	pub := r.PublicKey()
	err = r.store.ListMeta(ctx, clonePrefix(owner, name), func(key string, value []byte) error {
		rest := strings.TrimPrefix(key, clonePrefix(owner, name))
		switch {
		case strings.HasPrefix(rest, "g/"):
			m, _, err := manifest.Open(value, pub)
			if err != nil {
				return fmt.Errorf("generation %s: %w", rest, err)
			}
			st := m.Stats()
			g, _ := strconv.ParseUint(strings.TrimPrefix(rest, "g/"), 10, 64)
			h.Generations = append(h.Generations, api.GenerationInfo{Generation: g, Created: m.Created, Bytes: st.Bytes, Blocks: st.DistinctBlocks})
		case strings.HasPrefix(rest, "s/"):
			var si api.SnapshotInfo
			if err := json.Unmarshal(value, &si); err != nil {
				return err
			}
			h.Snapshots = append(h.Snapshots, si)
		}
		return nil
	})
	return h, err
}
