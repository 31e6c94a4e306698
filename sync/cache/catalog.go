package cache

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Server is what the catalog asks the server (sync/client.Client).
type Server interface {
	PublicKey(ctx context.Context) (ed25519.PublicKey, error)
	Templates(ctx context.Context) ([]api.TemplateInfo, error)
	Manifest(ctx context.Context, name string, version uint64) (*manifest.Manifest, []byte, error)
	Clones(ctx context.Context) ([]api.CloneInfo, error)
	CloneManifest(ctx context.Context, name string) (*manifest.Manifest, []byte, error)
}

// CatalogConfig configures a Catalog.
type CatalogConfig struct {
	// Server is asked for lists and manifests.
	Server Server
	// Meta keeps the signed manifests and the server's pinned key, so a
	// restart (or an unreachable server) still finds what was seen.
	Meta blockstore.MetaStore
	// TTL is how long a list is trusted before the server is asked again;
	// 0 means 10 s.
	TTL time.Duration
	// Logger receives the catalog's log.
	Logger *slog.Logger
}

// TemplateVersions names a template and its versions, oldest first.
type TemplateVersions struct {
	Name     string
	Versions []uint64
}

// Catalog tells a mount which templates and clones exist, and hands out
// their manifests, each checked against the server's pinned key.
type Catalog struct {
	cfg CatalogConfig
	log *slog.Logger

	mu        sync.Mutex
	key       ed25519.PublicKey
	templates []TemplateVersions
	tplAt     time.Time
	clones    []string
	clnAt     time.Time
	manifests map[string]*manifest.Manifest // "NAME@V" -> immutable template version
}

// Metadata keys of the catalog.
const (
	catKey      = "cat/serverkey"
	catTemplate = "cat/tpl/" // + NAME/VVVV: signed manifest
	catClone    = "cat/cln/" // + NAME: signed manifest of the clone's latest generation seen
)

// NewCatalog returns a catalog. The server's key is pinned in Meta on first
// contact; a server that later shows another key is refused.
func NewCatalog(cfg CatalogConfig) (*Catalog, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 10 * time.Second
	}
	c := &Catalog{cfg: cfg, log: cfg.Logger, manifests: make(map[string]*manifest.Manifest)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// ErrKeyChanged: the server signs with another key than the pinned one.
var ErrKeyChanged = errors.New("server key differs from the pinned key")

// serverKey returns the pinned key, pinning the server's on first use.
func (c *Catalog) serverKey(ctx context.Context) (ed25519.PublicKey, error) {
	if c.key != nil {
		return c.key, nil
	}
	pinned, err := c.cfg.Meta.GetMeta(ctx, catKey)
	switch {
	case err == nil:
		c.key = ed25519.PublicKey(pinned)
	case errors.Is(err, blockstore.ErrNotFound):
		k, err := c.cfg.Server.PublicKey(ctx)
		if err != nil {
			return nil, err
		}
		if err := c.cfg.Meta.CommitMeta(ctx, blockstore.MetaOp{Key: catKey, Value: k, Check: true}); err != nil {
			return nil, err
		}
		c.log.Info("pinned the server's signing key", "key_id", manifest.KeyID(k))
		c.key = k
	default:
		return nil, err
	}
	if k, err := c.cfg.Server.PublicKey(ctx); err == nil && !bytes.Equal(k, c.key) {
		return nil, fmt.Errorf("%w: pinned %s, server has %s", ErrKeyChanged, manifest.KeyID(c.key), manifest.KeyID(k))
	}
	return c.key, nil
}

// Templates lists templates, from the server or, when it cannot be
// reached, from the manifests kept locally.
func (c *Catalog) Templates(ctx context.Context) ([]TemplateVersions, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.templates != nil && time.Since(c.tplAt) < c.cfg.TTL {
		return c.templates, nil
	}
	list, err := c.cfg.Server.Templates(ctx)
	if err != nil {
		c.log.Warn("server unreachable; listing the templates kept locally", "err", err)
		return c.localTemplates(ctx)
	}
	out := make([]TemplateVersions, 0, len(list))
	for _, t := range list {
		tv := TemplateVersions{Name: t.Name}
		for _, v := range t.Versions {
			tv.Versions = append(tv.Versions, v.Version)
		}
		out = append(out, tv)
	}
	c.templates, c.tplAt = out, time.Now()
	return out, nil
}

func (c *Catalog) localTemplates(ctx context.Context) ([]TemplateVersions, error) {
	var out []TemplateVersions
	err := c.cfg.Meta.ListMeta(ctx, catTemplate, func(key string, _ []byte) error {
		name, vs, ok := strings.Cut(strings.TrimPrefix(key, catTemplate), "/")
		v, err := strconv.ParseUint(vs, 10, 64)
		if !ok || err != nil {
			return nil
		}
		if len(out) == 0 || out[len(out)-1].Name != name {
			out = append(out, TemplateVersions{Name: name})
		}
		out[len(out)-1].Versions = append(out[len(out)-1].Versions, v)
		return nil
	})
	return out, err
}

// Template returns the manifest of name@version (0: the latest listed).
func (c *Catalog) Template(ctx context.Context, name string, version uint64) (*manifest.Manifest, error) {
	if version == 0 {
		list, err := c.Templates(ctx)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(list, func(t TemplateVersions) bool { return t.Name == name })
		if i < 0 || len(list[i].Versions) == 0 {
			return nil, fmt.Errorf("template %q: %w", name, blockstore.ErrNotFound)
		}
		version = slices.Max(list[i].Versions)
	}
	ref := name + "@" + strconv.FormatUint(version, 10)
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.manifests[ref]; ok {
		return m, nil
	}
	key, err := c.serverKey(ctx)
	if err != nil {
		return nil, err
	}
	metaKey := fmt.Sprintf("%s%s/%020d", catTemplate, name, version)
	signed, err := c.cfg.Meta.GetMeta(ctx, metaKey)
	if errors.Is(err, blockstore.ErrNotFound) {
		if _, signed, err = c.cfg.Server.Manifest(ctx, name, version); err != nil {
			return nil, err
		}
		if err := c.cfg.Meta.CommitMeta(ctx, blockstore.MetaOp{Key: metaKey, Value: signed}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	// Check the signature with the pinned key, whichever way it came.
	m, _, err := manifest.Open(signed, key)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", ref, err)
	}
	if m.Kind != manifest.KindTemplate || m.Name != name || m.Version != version {
		return nil, fmt.Errorf("template %s: manifest is of %s@%d (kind %d)", ref, m.Name, m.Version, m.Kind)
	}
	c.manifests[ref] = m
	return m, nil
}

// Clones lists the user's clones, from the server or, when it cannot be
// reached, from the clones kept locally.
func (c *Catalog) Clones(ctx context.Context) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clones != nil && time.Since(c.clnAt) < c.cfg.TTL {
		return c.clones, nil
	}
	list, err := c.cfg.Server.Clones(ctx)
	if err != nil {
		c.log.Warn("server unreachable; listing the clones kept locally", "err", err)
		var out []string
		err := c.cfg.Meta.ListMeta(ctx, catClone, func(key string, _ []byte) error {
			out = append(out, strings.TrimPrefix(key, catClone))
			return nil
		})
		return out, err
	}
	out := make([]string, 0, len(list))
	for _, cl := range list {
		out = append(out, cl.Name)
	}
	c.clones, c.clnAt = out, time.Now()
	return out, nil
}

// Clone returns the manifest of a clone's latest generation: from the
// server, else the one kept locally.
func (c *Catalog) Clone(ctx context.Context, name string) (*manifest.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, err := c.serverKey(ctx)
	if err != nil {
		return nil, err
	}
	metaKey := catClone + name
	_, signed, err := c.cfg.Server.CloneManifest(ctx, name)
	if err != nil {
		var serr error
		signed, serr = c.cfg.Meta.GetMeta(ctx, metaKey)
		if serr != nil {
			return nil, err
		}
		c.log.Warn("server unreachable; using the clone manifest kept locally", "clone", name, "err", err)
	} else if err := c.cfg.Meta.CommitMeta(ctx, blockstore.MetaOp{Key: metaKey, Value: signed}); err != nil {
		return nil, err
	}
	m, _, err := manifest.Open(signed, key)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	if m.Kind != manifest.KindClone || m.Name != name {
		return nil, fmt.Errorf("clone %s: manifest is of %s (kind %d)", name, m.Name, m.Kind)
	}
	return m, nil
}
