package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/s3store"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// The object store's credentials, kept off the command line: in the
// environment, or in the file --store-credentials names.
const (
	s3AccessKeyEnv = "DVFS_S3_ACCESS_KEY"
	s3SecretKeyEnv = "DVFS_S3_SECRET_KEY"
)

// storeConfig holds dvfs serve's flags for an object store.
type storeConfig struct {
	url       string // s3://BUCKET[/PREFIX]?endpoint=HOST:PORT...; empty: blocks in the data directory
	credsFile string // file holding the access key and the secret key, a line each
}

func addStoreFlags(f *pflag.FlagSet, c *storeConfig) {
	f.StringVar(&c.url, "store", "", "keep blocks in an S3-compatible object store: "+
		"s3://BUCKET[/PREFIX]?endpoint=HOST:PORT[&region=R][&tls=false][&pack-size=32MiB], the credentials in $"+
		s3AccessKeyEnv+" and $"+s3SecretKeyEnv+" or --store-credentials (empty: blocks in the data directory)")
	f.StringVar(&c.credsFile, "store-credentials", "", "file (mode 0600) holding the object store's access key and secret key, a line each")
}

// parseStoreURL parses --store into an s3store.Config without
// credentials or metadata store.
func parseStoreURL(s string) (s3store.Config, error) {
	var cfg s3store.Config
	const want = "want s3://BUCKET[/PREFIX]?endpoint=HOST:PORT"
	u, err := url.Parse(s)
	if err != nil {
		return cfg, fmt.Errorf("--store: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" {
		return cfg, fmt.Errorf("--store %q: %s", s, want)
	}
	if u.User != nil {
		return cfg, fmt.Errorf("--store: give the credentials in $%s and $%s or --store-credentials, not in the URL", s3AccessKeyEnv, s3SecretKeyEnv)
	}
	cfg.Bucket = u.Host
	if cfg.Prefix = strings.Trim(u.Path, "/"); cfg.Prefix != "" {
		cfg.Prefix += "/"
	}
	cfg.Secure = true
	q := u.Query()
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "endpoint":
			if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
				return cfg, fmt.Errorf("--store: endpoint=%q is not HOST:PORT", v)
			}
			cfg.Endpoint = v
		case "region":
			cfg.Region = v
		case "tls":
			if cfg.Secure, err = strconv.ParseBool(v); err != nil {
				return cfg, fmt.Errorf("--store: tls=%q is not true or false", v)
			}
		case "pack-size":
			n, err := quotaFlag("--store pack-size", v)
			if err != nil {
				return cfg, err
			}
			cfg.PackSize = n
		default:
			return cfg, fmt.Errorf("--store: unknown option %q (endpoint, region, tls, pack-size)", k)
		}
	}
	if cfg.Endpoint == "" {
		return cfg, fmt.Errorf("--store %q: no endpoint: %s", s, want)
	}
	return cfg, nil
}

// storeCredentials reads the access key and the secret key from the file,
// when one is given, else from the environment.
func storeCredentials(file string) (access, secret string, err error) {
	if file == "" {
		access, secret = os.Getenv(s3AccessKeyEnv), os.Getenv(s3SecretKeyEnv)
		if access == "" || secret == "" {
			return "", "", fmt.Errorf("--store: no credentials: set $%s and $%s, or give --store-credentials FILE", s3AccessKeyEnv, s3SecretKeyEnv)
		}
		return access, secret, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("--store-credentials: %w", err)
	}
	lines := strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) != 2 {
		return "", "", fmt.Errorf("--store-credentials %s: want two lines, the access key and the secret key", file)
	}
	return strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1]), nil
}

// metaOnly hides the metadata store's Close from s3store, which would
// close it: the server closes it itself.
type metaOnly struct{ blockstore.MetaStore }

// openObjectStore opens the object store --store names, its block index
// in meta (the repository's metadata store: the data directory's, or
// etcd's when --meta gives metaURL), and returns the store the repository
// uses in meta's place, compacted every compactEvery until ctx ends.
// Close it before meta.
func openObjectStore(ctx context.Context, c storeConfig, meta repo.Store, metaURL string, log *slog.Logger) (repo.Store, error) {
	s, err := openS3(ctx, c, meta, metaURL, log)
	if err != nil {
		return nil, err
	}
	go compactLoop(ctx, s, log)
	return s, nil
}

// openS3 opens the object store --store names, with its block index and
// the repository's metadata in meta, which it does not close.
func openS3(ctx context.Context, c storeConfig, meta blockstore.MetaStore, metaURL string, log *slog.Logger) (*s3store.Store, error) {
	cfg, err := parseStoreURL(c.url)
	if err != nil {
		return nil, err
	}
	if cfg.AccessKey, cfg.SecretKey, err = storeCredentials(c.credsFile); err != nil {
		return nil, err
	}
	cfg.Meta, cfg.Logger = metaOnly{meta}, log
	// Each pack's index entries and record are one metadata commit:
	// badger takes any number, etcd its --max-txn-ops.
	if metaURL != "" {
		mc, err := parseMetaURL(metaURL)
		if err != nil {
			return nil, err
		}
		cfg.MaxCommitOps = mc.MaxTxnOps
	}
	s, err := s3store.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("--store %s: %w", c.url, err)
	}
	log.Info("blocks in an object store", "endpoint", cfg.Endpoint, "bucket", cfg.Bucket, "prefix", cfg.Prefix, "tls", cfg.Secure)
	return s, nil
}

// compactEvery is how often the server compacts its object store: the
// garbage collector's deletes drop index entries, and only a compaction
// shrinks or deletes the packs that held them.
const compactEvery = time.Hour

// compactLoop compacts s every compactEvery until ctx ends; a compaction
// under way when the server stops is cut off (packs are deleted only
// after their blocks have moved) or ends with the store's Close.
func compactLoop(ctx context.Context, s *s3store.Store, log *slog.Logger) {
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := s.Compact(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("object store compaction failed", "err", err)
		case st.Rewritten+st.Orphans > 0:
			log.Info("compacted the object store", "packs_rewritten", st.Rewritten, "orphans", st.Orphans, "blocks_moved", st.Moved, "freed", st.Freed)
		}
	}
}
