package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Clone metadata. A clone is a chain of generations, each a signed manifest
// of kind KindClone; generation 1 is made from a template version.
//
//	cln/OWNER/NAME/info    JSON api.CloneInfo (the latest generation in it)
//	cln/OWNER/NAME/g/GGG   the signed manifest of a generation
const prefixClones = "cln/"

func clonePrefix(owner, name string) string { return prefixClones + owner + "/" + name + "/" }
func cloneInfoKey(owner, name string) string {
	return clonePrefix(owner, name) + "info"
}
func cloneGenKey(owner, name string, g uint64) string {
	return fmt.Sprintf("%sg/%020d", clonePrefix(owner, name), g)
}

// ErrExists: the name is taken.
var ErrExists = errors.New("already exists")

// CreateClone records a new clone of template@version for owner. m is the
// clone's first tree: the template's manifest with the changes the client
// made at creation (such as the .vmx's displayName); its blocks must be
// stored. The clone's manifest may not name blocks the template's does not
// unless they are stored, like any commit.
func (r *Repo) CreateClone(ctx context.Context, owner string, m *manifest.Manifest, template string, version uint64) (api.CloneInfo, error) {
	tv, err := r.Version(ctx, template, version)
	if err != nil {
		return api.CloneInfo{}, err
	}
	return r.createClone(ctx, owner, m, api.CloneInfo{Template: template, TemplateVersion: tv.Version})
}

// createClone records m as owner's new clone; base gives its template
// and source.
func (r *Repo) createClone(ctx context.Context, owner string, m *manifest.Manifest, base api.CloneInfo) (api.CloneInfo, error) {
	var info api.CloneInfo
	if err := manifest.ValidName(m.Name); err != nil {
		return info, fmt.Errorf("%w: clone name: %v", ErrInvalid, err)
	}
	if err := validOwner(owner); err != nil {
		return info, err
	}
	m.Kind, m.Version, m.Parent = manifest.KindClone, 1, 0
	if err := m.Validate(); err != nil {
		return info, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := slices.Collect(m.BlockIDs())
	if err := r.blocksFit(ctx, owner, "clone", ids); err != nil {
		return info, err
	}
	now := r.now().UTC()
	m.Created = now
	body, err := m.MarshalBinary()
	if err != nil {
		return info, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	info = api.CloneInfo{
		Name: m.Name, Owner: owner, Template: base.Template, TemplateVersion: base.TemplateVersion,
		Generation: 1, Created: now, Updated: now, Bytes: m.Stats().Bytes, Source: base.Source,
	}
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return info, err
	}
	fence, err := r.gcFence(ctx)
	if err != nil {
		return info, err
	}
	err = r.store.CommitMeta(ctx, fence,
		blockstore.MetaOp{Key: cloneInfoKey(owner, m.Name), Value: infoJSON, Check: true},
		blockstore.MetaOp{Key: cloneGenKey(owner, m.Name, 1), Value: manifest.Sign(body, r.key)},
		r.revOp(revOwner(owner)),
	)
	if errors.Is(err, blockstore.ErrConflict) {
		return info, fmt.Errorf("clone %q of %s: %w", m.Name, owner, ErrExists)
	}
	if err != nil {
		return info, err
	}
	r.committed(ids)
	// Only fails when the set is not built; its build reads this commit.
	_ = r.grant(ctx, owner, ids)
	r.log.Info("created clone", "clone", m.Name, "owner", owner, "template", info.Template, "version", info.TemplateVersion, "source", info.Source)
	return info, nil
}

func validOwner(owner string) error {
	if err := api.ValidPrincipalName(owner); err != nil {
		return fmt.Errorf("%w: owner: %v", ErrInvalid, err)
	}
	return nil
}

// Clones lists owner's clones; owner "" lists every user's.
func (r *Repo) Clones(ctx context.Context, owner string) ([]api.CloneInfo, error) {
	prefix := prefixClones
	if owner != "" {
		if err := validOwner(owner); err != nil {
			return nil, err
		}
		prefix += owner + "/"
	}
	out := []api.CloneInfo{}
	err := r.store.ListMeta(ctx, prefix, func(key string, value []byte) error {
		if k, _ := keyKind(key); k != keyCloneInfo {
			return nil // generations, leases, snapshots (one may be named "info")
		}
		var info api.CloneInfo
		if err := json.Unmarshal(value, &info); err != nil {
			return fmt.Errorf("clone record %s: %w", key, err)
		}
		out = append(out, info)
		return nil
	})
	return out, err
}

// Clone describes one of owner's clones.
func (r *Repo) Clone(ctx context.Context, owner, name string) (api.CloneInfo, error) {
	var info api.CloneInfo
	if err := validOwner(owner); err != nil {
		return info, err
	}
	b, err := r.store.GetMeta(ctx, cloneInfoKey(owner, name))
	if errors.Is(err, blockstore.ErrNotFound) {
		return info, fmt.Errorf("clone %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return info, err
	}
	return info, json.Unmarshal(b, &info)
}

// CloneSigned returns the signed manifest of the clone's latest generation.
func (r *Repo) CloneSigned(ctx context.Context, owner, name string) ([]byte, error) {
	info, err := r.Clone(ctx, owner, name)
	if err != nil {
		return nil, err
	}
	return r.store.GetMeta(ctx, cloneGenKey(owner, name, info.Generation))
}

// RemoveClone deletes a clone and all its generations, and stops its
// sharing. Its blocks go at the next garbage collection. A workstation
// holding its lease finds it gone at its next commit or renewal.
func (r *Repo) RemoveClone(ctx context.Context, owner, name string) error {
	if err := validOwner(owner); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		ops    []blockstore.MetaOp
		shared []string
	)
	err := r.store.ListMeta(ctx, clonePrefix(owner, name), func(key string, value []byte) error {
		ops = append(ops, blockstore.MetaOp{Key: key})
		if k, _ := keyKind(key); k == keyCloneInfo {
			var info api.CloneInfo
			if err := json.Unmarshal(value, &info); err != nil {
				return fmt.Errorf("clone record %s: %w", key, err)
			}
			shared = info.Shared
			for _, g := range shared {
				ops = append(ops, blockstore.MetaOp{Key: shareKey(g, owner, name)})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(ops) == 0 {
		return fmt.Errorf("clone %q: %w", name, ErrNotFound)
	}
	if err := r.store.CommitMeta(ctx, ops...); err != nil {
		return err
	}
	r.dropGroups(shared...)
	r.log.Info("removed clone", "clone", name, "owner", owner)
	return nil
}

// blocksFit fails with a *MissingError when the store lacks some of ids,
// and with ErrQuota when a commit (what) naming them would take owner
// past a quota.
func (r *Repo) blocksFit(ctx context.Context, owner, what string, ids []blockstore.ID) error {
	missing, err := r.lacking(ctx, ids)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingError{IDs: missing}
	}
	return r.quotaRoom(ctx, owner, what, ids)
}
