package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Sharing. An owner shares a clone read-only with groups: their members
// may read its latest generation (its manifest and blocks) and make
// clones of their own from it, as from a template. The groups are in the
// clone's record (api.CloneInfo.Shared), and an index lists each group's
// shared clones:
//
//	shr/GROUP/OWNER/NAME   empty
const prefixShares = "shr/"

func shareKey(group, owner, name string) string {
	return prefixShares + group + "/" + owner + "/" + name
}

// Share shares owner's clone name with group (share) or stops sharing
// it, and returns the clone's record. Stopping takes effect at once: the
// group's members may no longer read its blocks, except those their own
// clones hold.
func (r *Repo) Share(ctx context.Context, owner, name, group string, share bool) (api.CloneInfo, error) {
	var info api.CloneInfo
	if err := validOwner(owner); err != nil {
		return info, err
	}
	if err := api.ValidGroupName(group); err != nil {
		return info, fmt.Errorf("%w: group: %v", ErrInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old, err := r.store.GetMeta(ctx, cloneInfoKey(owner, name))
	if errors.Is(err, blockstore.ErrNotFound) {
		return info, fmt.Errorf("clone %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(old, &info); err != nil {
		return info, err
	}
	idx := blockstore.MetaOp{Key: shareKey(group, owner, name)}
	if share {
		if slices.Contains(info.Shared, group) {
			return info, nil
		}
		info.Shared = append(info.Shared, group)
		slices.Sort(info.Shared)
		idx.Value = []byte{}
	} else {
		i := slices.Index(info.Shared, group)
		if i < 0 {
			return info, nil
		}
		info.Shared = slices.Delete(info.Shared, i, i+1)
		if len(info.Shared) == 0 {
			info.Shared = nil
		}
	}
	b, err := json.Marshal(info)
	if err != nil {
		return info, err
	}
	err = r.store.CommitMeta(ctx, blockstore.MetaOp{Key: cloneInfoKey(owner, name), Value: b, Check: true, Old: old}, idx, r.revOp(prefixRevGroup+group))
	if err != nil {
		return info, err
	}
	r.dropGroups(group)
	r.log.Info("clone sharing changed", "clone", name, "owner", owner, "group", group, "shared", share)
	return info, nil
}

// SharedWith lists the clones shared with any of groups.
func (r *Repo) SharedWith(ctx context.Context, groups []string) ([]api.CloneInfo, error) {
	out := []api.CloneInfo{}
	seen := make(map[string]bool)
	for _, g := range groups {
		if api.ValidGroupName(g) != nil {
			continue // a directory's group no share can name
		}
		var keys []string
		err := r.store.ListMeta(ctx, prefixShares+g+"/", func(key string, _ []byte) error {
			keys = append(keys, strings.TrimPrefix(key, prefixShares+g+"/"))
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			owner, name, ok := strings.Cut(k, "/")
			if !ok || seen[k] {
				continue
			}
			seen[k] = true
			info, err := r.Clone(ctx, owner, name)
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile
			}
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	return out, nil
}

// SharedWithAny reports whether owner's clone name is shared with one of
// groups; false, with no error, when there is no such clone.
func (r *Repo) SharedWithAny(ctx context.Context, owner, name string, groups []string) (bool, error) {
	info, err := r.Clone(ctx, owner, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, g := range info.Shared {
		if slices.Contains(groups, g) {
			return true, nil
		}
	}
	return false, nil
}

// CreateCloneFrom records a new clone for owner made from the latest
// generation of srcOwner's clone src, which must be shared with one of
// groups (the caller checks who may; this checks that it still is). m is
// the new clone's first tree, as for CreateClone.
func (r *Repo) CreateCloneFrom(ctx context.Context, owner string, m *manifest.Manifest, srcOwner, src string, groups []string) (api.CloneInfo, error) {
	ok, err := r.SharedWithAny(ctx, srcOwner, src, groups)
	if err != nil {
		return api.CloneInfo{}, err
	}
	if !ok {
		return api.CloneInfo{}, fmt.Errorf("clone %s/%s: %w", srcOwner, src, ErrNotFound)
	}
	si, err := r.Clone(ctx, srcOwner, src)
	if err != nil {
		return api.CloneInfo{}, err
	}
	base := api.CloneInfo{Template: si.Template, TemplateVersion: si.TemplateVersion,
		Source: fmt.Sprintf("%s/%s@%d", srcOwner, src, si.Generation)}
	return r.createClone(ctx, owner, m, base)
}
