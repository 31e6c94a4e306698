package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/sync/server"
)

// etcdPasswordEnv holds the etcd user's password for --meta, which is
// kept off the command line.
const etcdPasswordEnv = "DVFS_ETCD_PASSWORD"

// Limits asked of an etcd cluster that holds a repository's metadata
// unless --meta's query says otherwise (DESIGN.md, Metadata in etcd).
const (
	metaMaxTxnOps       = 8192
	metaMaxRequestBytes = 32 << 20
)

// parseMetaURL parses --meta: etcd://[USER@]HOST:PORT,HOST:PORT/PREFIX
// with optional max-txn-ops and max-request-bytes in the query, the
// cluster's --max-txn-ops and --max-request-bytes.
func parseMetaURL(s string) (etcdmeta.Config, error) {
	var cfg etcdmeta.Config
	u, err := url.Parse(s)
	if err != nil {
		return cfg, fmt.Errorf("--meta: %w", err)
	}
	if u.Scheme != "etcd" {
		return cfg, fmt.Errorf("--meta %q: want etcd://HOST:PORT,HOST:PORT/PREFIX", s)
	}
	for _, ep := range strings.Split(u.Host, ",") {
		if ep == "" || !strings.Contains(ep, ":") {
			return cfg, fmt.Errorf("--meta %q: endpoint %q is not HOST:PORT", s, ep)
		}
		cfg.Endpoints = append(cfg.Endpoints, ep)
	}
	cfg.Prefix = strings.TrimPrefix(u.Path, "/")
	if cfg.Prefix == "" {
		return cfg, fmt.Errorf("--meta %q: no prefix (etcd://.../PREFIX): the repository's keys need one of their own", s)
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	if u.User != nil {
		cfg.Username = u.User.Username()
		if _, set := u.User.Password(); set {
			return cfg, fmt.Errorf("--meta: give the password in %s, not in the URL", etcdPasswordEnv)
		}
		cfg.Password = os.Getenv(etcdPasswordEnv)
	}
	cfg.MaxTxnOps, cfg.MaxRequestBytes = metaMaxTxnOps, metaMaxRequestBytes
	for k, vs := range u.Query() {
		n, err := strconv.Atoi(vs[len(vs)-1])
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("--meta: %s=%q is not a positive number", k, vs[len(vs)-1])
		}
		switch k {
		case "max-txn-ops":
			cfg.MaxTxnOps = n
		case "max-request-bytes":
			cfg.MaxRequestBytes = n
		default:
			return cfg, fmt.Errorf("--meta: unknown option %q (max-txn-ops, max-request-bytes)", k)
		}
	}
	return cfg, nil
}

// openMeta opens the metadata store that --meta names.
func openMeta(ctx context.Context, s string, log *slog.Logger) (*etcdmeta.Store, error) {
	cfg, err := parseMetaURL(s)
	if err != nil {
		return nil, err
	}
	cfg.Logger = log
	m, err := etcdmeta.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log.Info("metadata in etcd", "endpoints", cfg.Endpoints, "prefix", cfg.Prefix)
	return m, nil
}

// metaBinding is what bindMeta records for --meta s: the prefix, since a
// cluster's endpoints may change.
func metaBinding(s string) string {
	if s == "" {
		return "local"
	}
	cfg, _ := parseMetaURL(s)
	return "etcd:" + cfg.Prefix
}

// metaBindingKey, in the data directory's store, says which metadata the
// store's blocks belong to: "local" (its own) or "etcd:PREFIX".
const metaBindingKey = "dvfs-serve/meta"

// bindMeta makes sure a data directory's blocks serve one repository's
// metadata only: the garbage collector deletes the blocks that the
// metadata does not name, so a data directory started once with another
// --meta (or none) would lose the blocks of the first. The first start
// binds it; a store that already holds local metadata is not bound to
// etcd (that is a migration: dvfs migrate copies such a repository into
// etcd and an object store, for servers with data directories of their
// own).
func bindMeta(ctx context.Context, store *badgerstore.Store, where string) error {
	cur, err := store.GetMeta(ctx, metaBindingKey)
	switch {
	case err == nil && string(cur) == where:
		return nil
	case err == nil:
		return fmt.Errorf("this data directory's blocks belong to the metadata in %s, not %s: "+
			"start it with that --meta (its garbage collection would delete the blocks the other one names)", cur, where)
	case !errors.Is(err, blockstore.ErrNotFound):
		return err
	}
	if where != "local" {
		found := errors.New("found")
		err := store.ListMeta(ctx, "", func(string, []byte) error { return found })
		if errors.Is(err, found) {
			return fmt.Errorf("this data directory holds a repository's own metadata; --meta %s would start an empty one beside its blocks (to move this repository into etcd, stop this server and run dvfs migrate --from this directory)", where)
		}
		if err != nil {
			return err
		}
	}
	return store.CommitMeta(ctx, blockstore.MetaOp{Key: metaBindingKey, Value: []byte(where), Check: true})
}

// metaStore is the server's store with its metadata elsewhere: blocks
// (and Stager, Compressor) from the block store, GetMeta, ListMeta and
// CommitMeta from meta.
type metaStore struct {
	*badgerstore.Store
	meta *etcdmeta.Store
}

func (s metaStore) GetMeta(ctx context.Context, key string) ([]byte, error) {
	return s.meta.GetMeta(ctx, key)
}

func (s metaStore) ListMeta(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	return s.meta.ListMeta(ctx, prefix, fn)
}

func (s metaStore) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	return s.meta.CommitMeta(ctx, ops...)
}

// Close closes both stores.
func (s metaStore) Close() error {
	return errors.Join(s.meta.Close(), s.Store.Close())
}

// repoKeyKey, in a shared repository's metadata, names the key every
// manifest is signed with (manifest.KeyID).
const repoKeyKey = "srv/signing-key"

// checkSigningKey makes sure every server of a repository whose metadata
// is shared (--meta) signs with one key: workstations pin it, and a
// manifest signed with another would be refused. The first server records
// its key's ID; the others must have the same key in their data directory.
func checkSigningKey(ctx context.Context, meta blockstore.MetaStore, keyID string) error {
	cur, err := meta.GetMeta(ctx, repoKeyKey)
	switch {
	case err == nil && string(cur) == keyID:
		return nil
	case err == nil:
		return fmt.Errorf("this server's signing key (%s) is not the repository's (%s): copy %s and %s from the data directory of a server of this repository into this one's",
			keyID, cur, server.KeyFile, server.PubKeyFile)
	case !errors.Is(err, blockstore.ErrNotFound):
		return err
	}
	err = meta.CommitMeta(ctx, blockstore.MetaOp{Key: repoKeyKey, Value: []byte(keyID), Check: true})
	if errors.Is(err, blockstore.ErrConflict) {
		return checkSigningKey(ctx, meta, keyID) // another server recorded one first
	}
	return err
}
