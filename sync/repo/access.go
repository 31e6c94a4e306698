package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// Who may read a block. A user may read the blocks of every template
// version and of their own clones' generations, the blocks they
// uploaded whole themselves (the upload proved they hold the bytes), and
// the blocks of the latest generation of each clone shared with one of
// their groups (Share). The
// server asks before it answers fetch and missing for a user, and before
// it commits a user's clone naming blocks (a manifest naming an ID is no
// proof of holding its bytes).
//
// The sets live in memory, built on first use from the signed manifests
// (one pass over the templates, one over an owner's clones, plus the
// owner's uploads still in their grace) and kept up to date by every
// commit and upload after it. Between collections they only grow: a block
// someone could read stays theirs to read, which gives away nothing they
// did not hold. Each collection drops them all (reset), so removed clones
// and versions stop counting; they are built again on demand. Their size
// is that of the garbage collector's live set. A group's set is exact
// instead: dropped whenever one of its shared clones changes (a commit,
// a share or unshare, a removal) and built again on the next request.
//
// Several servers over one metadata store (etcd) each keep their own sets,
// and a commit through one grows only that one's. So every commit that
// grows a set also writes a new revision of it (acc/..., revKey), and a
// set remembers the revision it was built from: a read refused by the sets
// (UnreadableNow) builds again those whose revision changed, and asks once
// more. An upload or commit refused by stale sets needs no such check:
// the blocks are missing to the caller, who uploads them.
type access struct {
	mu        sync.Mutex
	templates map[blockstore.ID]struct{} // nil: not built yet
	owners    map[string]*ownerSet
	groups    map[string]map[blockstore.ID]struct{}
	// revs holds the revision each built set was built from, by revKey.
	revs map[string]string
	// mine holds the last revision this server wrote, by revKey: a
	// watched change to it is this server's own (WatchCatalog).
	mine map[string]string
}

// ownerSet is what one user may read beyond the templates.
type ownerSet struct {
	ids map[blockstore.ID]struct{}
	// private counts the IDs in ids that no template names: the blocks
	// the user's data holds on the server (Config.CloneQuota).
	private int
}

// Unreadable returns the IDs of ids that owner may not read.
func (r *Repo) Unreadable(ctx context.Context, owner string, ids []blockstore.ID) ([]blockstore.ID, error) {
	return r.UnreadableBy(ctx, owner, nil, ids)
}

// UnreadableBy returns the IDs of ids that owner, a member of groups, may
// not read.
func (r *Repo) UnreadableBy(ctx context.Context, owner string, groups []string, ids []blockstore.ID) ([]blockstore.ID, error) {
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	own, err := r.ownerSetLocked(ctx, owner)
	if err != nil {
		return nil, err
	}
	var out []blockstore.ID
	for _, id := range ids {
		if _, ok := a.templates[id]; ok {
			continue
		}
		if _, ok := own.ids[id]; ok {
			continue
		}
		out = append(out, id)
	}
	for _, g := range groups {
		if len(out) == 0 {
			break
		}
		set, err := r.groupSetLocked(ctx, g)
		if err != nil {
			return nil, err
		}
		out = slices.DeleteFunc(out, func(id blockstore.ID) bool { _, ok := set[id]; return ok })
	}
	return out, nil
}

// UnreadableNow is UnreadableBy for a read: when the sets refuse some ids,
// it builds again those that changed through another server since they
// were built, and asks again.
func (r *Repo) UnreadableNow(ctx context.Context, owner string, groups []string, ids []blockstore.ID) ([]blockstore.ID, error) {
	out, err := r.UnreadableBy(ctx, owner, groups, ids)
	if err != nil || len(out) == 0 {
		return out, err
	}
	a := &r.access
	a.mu.Lock()
	stale := false
	scopes := append([]string{revTemplates, revOwner(owner)}, groupRevs(groups)...)
	for _, k := range scopes {
		built, ok := a.revs[k]
		if !ok {
			continue // not built: the next request builds it
		}
		cur, err := r.readRev(ctx, k)
		if err != nil {
			a.mu.Unlock()
			return nil, err
		}
		if cur == built {
			continue
		}
		stale = true
		switch {
		case k == revTemplates:
			// Owners' private counts depend on the template set.
			a.templates, a.owners, a.groups = nil, nil, nil
		case k == revOwner(owner):
			delete(a.owners, owner)
		default:
			delete(a.groups, strings.TrimPrefix(k, prefixRevGroup))
		}
		delete(a.revs, k)
	}
	a.mu.Unlock()
	if !stale {
		return out, nil
	}
	return r.UnreadableBy(ctx, owner, groups, out)
}

// Revisions of the access sets (access): a key per set, rewritten with a
// new random value by every commit that grows the set.
const (
	revTemplates   = "acc/templates"
	prefixRevOwner = "acc/o/"
	prefixRevGroup = "acc/g/"
)

func revOwner(owner string) string { return prefixRevOwner + owner }

func groupRevs(groups []string) []string {
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		out = append(out, prefixRevGroup+g)
	}
	return out
}

// revOp writes a new revision of the set under key, and remembers it as
// this server's own (WatchCatalog).
func (r *Repo) revOp(key string) blockstore.MetaOp {
	var b [16]byte
	rand.Read(b[:])
	rev := hex.EncodeToString(b[:])
	a := &r.access
	a.mu.Lock()
	if a.mine == nil {
		a.mine = make(map[string]string)
	}
	a.mine[key] = rev
	a.mu.Unlock()
	return blockstore.MetaOp{Key: key, Value: []byte(rev)}
}

// readRev returns the revision under key ("" when none was written).
func (r *Repo) readRev(ctx context.Context, key string) (string, error) {
	b, err := r.store.GetMeta(ctx, key)
	if errors.Is(err, blockstore.ErrNotFound) {
		return "", nil
	}
	return string(b), err
}

// noteRev records the revision a set is built from; read it before
// building, so a change during the build shows as a change later. The
// caller holds access.mu.
func (r *Repo) noteRev(ctx context.Context, key string) error {
	rev, err := r.readRev(ctx, key)
	if err != nil {
		return err
	}
	a := &r.access
	if a.revs == nil {
		a.revs = make(map[string]string)
	}
	a.revs[key] = rev
	return nil
}

// groupSetLocked returns the blocks of the latest generations of the
// clones shared with group, built if need be. The caller holds access.mu.
func (r *Repo) groupSetLocked(ctx context.Context, group string) (map[blockstore.ID]struct{}, error) {
	a := &r.access
	if set, ok := a.groups[group]; ok {
		return set, nil
	}
	if err := r.noteRev(ctx, prefixRevGroup+group); err != nil {
		return nil, err
	}
	set := make(map[blockstore.ID]struct{})
	shared, err := r.SharedWith(ctx, []string{group})
	if err != nil {
		return nil, err
	}
	pub := r.PublicKey()
	for _, info := range shared {
		signed, err := r.GenerationSigned(ctx, info.Owner, info.Name, info.Generation)
		if err != nil {
			return nil, err
		}
		m, _, err := manifest.Open(signed, pub)
		if err != nil {
			return nil, fmt.Errorf("clone %s/%s generation %d: %w", info.Owner, info.Name, info.Generation, err)
		}
		for id := range m.BlockIDs() {
			set[id] = struct{}{}
		}
	}
	if a.groups == nil {
		a.groups = make(map[string]map[blockstore.ID]struct{})
	}
	a.groups[group] = set
	return set, nil
}

// dropGroups forgets the sets of groups: one of their clones changed.
func (r *Repo) dropGroups(groups ...string) {
	if len(groups) == 0 {
		return
	}
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range groups {
		delete(a.groups, g)
	}
}

// grant lets owner read ids; owner "" stands for every user (templates).
func (r *Repo) grant(ctx context.Context, owner string, ids []blockstore.ID) error {
	if len(ids) == 0 {
		return nil
	}
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	own, err := r.ownerSetLocked(ctx, owner)
	if err != nil {
		return err
	}
	if owner != "" {
		for _, id := range ids {
			own.add(id, a.templates)
		}
		return nil
	}
	a.addTemplatesLocked(ids)
	return nil
}

// addTemplatesLocked adds ids to the built template set. The caller
// holds a.mu.
func (a *access) addTemplatesLocked(ids []blockstore.ID) {
	for _, id := range ids {
		if _, ok := a.templates[id]; ok {
			continue
		}
		a.templates[id] = struct{}{}
		for _, o := range a.owners {
			if _, ok := o.ids[id]; ok {
				o.private--
			}
		}
	}
}

func (o *ownerSet) add(id blockstore.ID, templates map[blockstore.ID]struct{}) {
	if _, ok := o.ids[id]; ok {
		return
	}
	o.ids[id] = struct{}{}
	if _, ok := templates[id]; !ok {
		o.private++
	}
}

// privateBlocks returns how many blocks owner's data holds that no
// template names, and would hold with ids added.
func (r *Repo) privateBlocks(ctx context.Context, owner string, ids []blockstore.ID) (now, with int, err error) {
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	own, err := r.ownerSetLocked(ctx, owner)
	if err != nil {
		return 0, 0, err
	}
	now, with = own.private, own.private
	seen := make(map[blockstore.ID]struct{}, len(ids))
	for _, id := range ids {
		if _, ok := own.ids[id]; ok {
			continue
		}
		if _, ok := a.templates[id]; ok {
			continue
		}
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			with++
		}
	}
	return now, with, nil
}

// reset drops every set; the next request builds what it needs again.
func (r *Repo) reset() {
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	a.templates, a.owners, a.groups = nil, nil, nil
}

// ownerSetLocked builds what it lacks of the template set and owner's set
// and returns owner's (nil for owner ""). The caller holds access.mu.
func (r *Repo) ownerSetLocked(ctx context.Context, owner string) (*ownerSet, error) {
	a := &r.access
	if a.templates == nil {
		if err := r.noteRev(ctx, revTemplates); err != nil {
			return nil, err
		}
		set := make(map[blockstore.ID]struct{})
		if err := r.markManifests(ctx, prefixTemplates, keyTemplateMan, set); err != nil {
			return nil, err
		}
		a.templates = set
	}
	if owner == "" {
		return nil, nil
	}
	if o, ok := a.owners[owner]; ok {
		return o, nil
	}
	if err := validOwner(owner); err != nil {
		return nil, err
	}
	if err := r.noteRev(ctx, revOwner(owner)); err != nil {
		return nil, err
	}
	set := make(map[blockstore.ID]struct{})
	if err := r.markManifests(ctx, prefixClones+owner+"/", keyCloneGen, set); err != nil {
		return nil, err
	}
	// Whole uploads in their grace are the owner's too (AcceptFor).
	r.recentMu.Lock()
	for id, p := range r.recent {
		if p.owner == owner {
			set[id] = struct{}{}
		}
	}
	r.recentMu.Unlock()
	o := &ownerSet{ids: set}
	for id := range set {
		if _, ok := a.templates[id]; !ok {
			o.private++
		}
	}
	if a.owners == nil {
		a.owners = make(map[string]*ownerSet)
	}
	a.owners[owner] = o
	return o, nil
}

// markManifests adds to set the blocks of every signed manifest of kind
// under prefix.
func (r *Repo) markManifests(ctx context.Context, prefix string, kind int, set map[blockstore.ID]struct{}) error {
	pub := r.PublicKey()
	return r.store.ListMeta(ctx, prefix, func(key string, value []byte) error {
		if k, _ := keyKind(key); k != kind {
			return nil
		}
		m, _, err := manifest.Open(value, pub)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", key, err)
		}
		for id := range m.BlockIDs() {
			set[id] = struct{}{}
		}
		return nil
	})
}
