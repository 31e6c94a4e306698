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

// Commit makes m, whose blocks must all be stored already, the next version
// of its template. It fills in Kind, Version, Parent and Created, signs the
// result and stores it in one atomic metadata commit. A manifest naming a
// block the store lacks gets a *MissingError and changes nothing.
func (r *Repo) Commit(ctx context.Context, m *manifest.Manifest) (_ api.VersionInfo, err error) {
	defer func() { r.countCommit("template", err) }()
	m.Kind = manifest.KindTemplate
	m.Version, m.Parent = 1, 0 // placeholders, so Validate sees a complete manifest
	if err := manifest.ValidName(m.Name); err != nil {
		return api.VersionInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return api.VersionInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ids := slices.Collect(m.BlockIDs())

	r.mu.Lock()
	defer r.mu.Unlock()
	missing, err := r.lacking(ctx, ids)
	if err != nil {
		return api.VersionInfo{}, err
	}
	if len(missing) > 0 {
		return api.VersionInfo{}, &MissingError{IDs: missing}
	}

	oldNext, err := r.store.GetMeta(ctx, nextKey(m.Name))
	next := uint64(1)
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		oldNext = nil
	case err != nil:
		return api.VersionInfo{}, err
	default:
		if next, err = decodeUint(oldNext); err != nil {
			return api.VersionInfo{}, err
		}
	}
	latest, err := r.latest(ctx, m.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return api.VersionInfo{}, err
	}
	m.Version, m.Parent, m.Created = next, latest, r.now().UTC()
	body, err := m.MarshalBinary()
	if err != nil {
		return api.VersionInfo{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	signed := manifest.Sign(body, r.key)
	info := r.info(m)
	infoJSON, err := json.Marshal(info)
	if err != nil {
		return api.VersionInfo{}, err
	}
	fence, err := r.gcFence(ctx)
	if err != nil {
		return api.VersionInfo{}, err
	}
	err = r.store.CommitMeta(ctx, fence,
		blockstore.MetaOp{Key: nextKey(m.Name), Value: encodeUint(next + 1), Check: true, Old: oldNext},
		blockstore.MetaOp{Key: manifestKey(m.Name, next), Value: signed},
		blockstore.MetaOp{Key: infoKey(m.Name, next), Value: infoJSON},
		r.revOp(revTemplates),
	)
	if err != nil {
		return api.VersionInfo{}, fmt.Errorf("commit %s@%d: %w", m.Name, next, err)
	}
	r.committed(ids)
	// Only fails when the set is not built; its build reads this commit.
	_ = r.grant(ctx, "", ids)
	r.log.Info("committed template version", "template", m.Name, "version", next,
		"parent", latest, "files", info.Files, "bytes", info.Bytes, "blocks", info.Blocks)
	return info, nil
}

func (r *Repo) info(m *manifest.Manifest) api.VersionInfo {
	st := m.Stats()
	return api.VersionInfo{
		Name:       m.Name,
		Version:    m.Version,
		Parent:     m.Parent,
		Created:    m.Created,
		Files:      st.Files,
		Bytes:      st.Bytes,
		Blocks:     st.DistinctBlocks,
		HoleBlocks: st.HoleBlocks,
		KeyID:      r.keyID,
	}
}

// latest returns the newest kept version of a template.
func (r *Repo) latest(ctx context.Context, name string) (uint64, error) {
	var v uint64
	err := r.store.ListMeta(ctx, templatePrefix(name)+"i/", func(key string, _ []byte) error {
		n, err := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 64)
		if err == nil && n > v {
			v = n
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if v == 0 {
		return 0, fmt.Errorf("template %q: %w", name, ErrNotFound)
	}
	return v, nil
}

// resolve turns version 0 ("latest") into a number.
func (r *Repo) resolve(ctx context.Context, name string, version uint64) (uint64, error) {
	if version != 0 {
		return version, nil
	}
	return r.latest(ctx, name)
}

// Version returns the description of name@version (0: latest).
func (r *Repo) Version(ctx context.Context, name string, version uint64) (api.VersionInfo, error) {
	var info api.VersionInfo
	v, err := r.resolve(ctx, name, version)
	if err != nil {
		return info, err
	}
	b, err := r.store.GetMeta(ctx, infoKey(name, v))
	if errors.Is(err, blockstore.ErrNotFound) {
		return info, fmt.Errorf("template %s@%d: %w", name, v, ErrNotFound)
	}
	if err != nil {
		return info, err
	}
	err = json.Unmarshal(b, &info)
	return info, err
}

// Signed returns the signed manifest of name@version (0: latest).
func (r *Repo) Signed(ctx context.Context, name string, version uint64) ([]byte, error) {
	v, err := r.resolve(ctx, name, version)
	if err != nil {
		return nil, err
	}
	b, err := r.store.GetMeta(ctx, manifestKey(name, v))
	if errors.Is(err, blockstore.ErrNotFound) {
		return nil, fmt.Errorf("template %s@%d: %w", name, v, ErrNotFound)
	}
	return b, err
}

// List returns every template with its versions, oldest first.
func (r *Repo) List(ctx context.Context) ([]api.TemplateInfo, error) {
	var out []api.TemplateInfo
	err := r.store.ListMeta(ctx, prefixTemplates, func(key string, value []byte) error {
		rest := strings.TrimPrefix(key, prefixTemplates)
		name, kind, ok := strings.Cut(rest, "/")
		if !ok || !strings.HasPrefix(kind, "i/") {
			return nil
		}
		var info api.VersionInfo
		if err := json.Unmarshal(value, &info); err != nil {
			return fmt.Errorf("version record %s: %w", key, err)
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, api.TemplateInfo{Name: name})
		}
		t := &out[len(out)-1]
		t.Versions = append(t.Versions, info)
		return nil
	})
	return out, err
}

// Remove deletes name@version, or every version of name when version is 0.
// Blocks stay until the next garbage collection.
func (r *Repo) Remove(ctx context.Context, name string, version uint64) (removed []uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.store.ListMeta(ctx, templatePrefix(name)+"i/", func(key string, _ []byte) error {
		n, err := strconv.ParseUint(key[strings.LastIndexByte(key, '/')+1:], 10, 64)
		if err != nil {
			return err
		}
		if version == 0 || n == version {
			removed = append(removed, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(removed) == 0 {
		if version == 0 {
			return nil, fmt.Errorf("template %q: %w", name, ErrNotFound)
		}
		return nil, fmt.Errorf("template %s@%d: %w", name, version, ErrNotFound)
	}
	ops := make([]blockstore.MetaOp, 0, 2*len(removed))
	for _, v := range removed {
		ops = append(ops, blockstore.MetaOp{Key: manifestKey(name, v)}, blockstore.MetaOp{Key: infoKey(name, v)})
	}
	if err := r.store.CommitMeta(ctx, ops...); err != nil {
		return nil, err
	}
	r.log.Info("removed template versions", "template", name, "versions", removed)
	return removed, nil
}
