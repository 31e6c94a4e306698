package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/s3store"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// migrateConfig holds the flags of dvfs migrate.
type migrateConfig struct {
	from  string // the embedded server's data directory
	data  string // the distributed server's data directory: keys, admin token
	meta  string // etcd://... as dvfs serve --meta
	store storeConfig
}

func newMigrateCmd(g *globals) *cobra.Command {
	var c migrateConfig
	cmd := &cobra.Command{
		Use:   "migrate --from DIR --store s3://... --meta etcd://... [--data NEWDIR]",
		Short: "Move a stopped server's repository (blocks, metadata, signing key) into an object store and etcd",
		Long: "Copies the repository of the data directory --from (its server stopped) into the object store\n" +
			"--store and the etcd cluster --meta that dvfs serve --store --meta then serve: every block (verified,\n" +
			"those already there skipped), then every metadata key, then the signing key's record. Run again after\n" +
			"an interruption, it goes on where it stopped; after it finished, it only checks. It refuses a target\n" +
			"that holds another repository and changes nothing there. --data gets the signing key and admin token\n" +
			"for the first distributed server.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMigrate(cmd.Context(), g, c, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.from, "from", "", "data directory of the server to migrate (stopped)")
	f.StringVar(&c.data, "data", "", "data directory of the first distributed server: gets the signing key and the admin token (created if absent)")
	f.StringVar(&c.meta, "meta", "", "the etcd cluster to move the metadata into, as dvfs serve --meta: "+
		"etcd://[USER@]HOST:PORT,HOST:PORT/PREFIX[?max-txn-ops=N&max-request-bytes=N], the password in $"+etcdPasswordEnv)
	addStoreFlags(f, &c.store)
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("meta")
	_ = cmd.MarkFlagRequired("store")
	return cmd
}

// migrationKey, in a shared repository's metadata (beside repoKeyKey),
// records a dvfs migrate into it: "incomplete KEYID" from the first
// write until everything is copied and checked, then "done KEYID".
// Servers refuse to start on an incomplete one.
const migrationKey = "srv/migration"

// checkMigrated refuses a repository that a dvfs migrate is still
// filling (or that one left half-way).
func checkMigrated(ctx context.Context, meta blockstore.MetaStore) error {
	v, err := meta.GetMeta(ctx, migrationKey)
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		return nil
	case err != nil:
		return err
	case strings.HasPrefix(string(v), "incomplete "):
		return errors.New("a dvfs migrate into this repository has not finished: run it again to its end before starting servers")
	}
	return nil
}

// migrateStats is what a migration did.
type migrateStats struct {
	blocks, copied, skipped int
	bytes                   int64
	keys, keysCopied        int
}

func runMigrate(ctx context.Context, g *globals, c migrateConfig, out io.Writer) error {
	key, keyID, err := loadSourceKey(c.from)
	if err != nil {
		return err
	}
	if c.data != "" {
		if err := checkNewDataDir(c.from, c.data); err != nil {
			return err
		}
	}
	src, err := openSource(ctx, c.from, g.log)
	if err != nil {
		return err
	}
	defer src.Close()
	mc, err := parseMetaURL(c.meta)
	if err != nil {
		return err
	}
	meta, err := openMeta(ctx, c.meta, g.log)
	if err != nil {
		return err
	}
	defer meta.Close()
	dst, err := openS3(ctx, c.store, meta, c.meta, g.log)
	if err != nil {
		return err
	}
	defer dst.Close()

	state, err := meta.GetMeta(ctx, migrationKey)
	if err != nil && !errors.Is(err, blockstore.ErrNotFound) {
		return err
	}
	if string(state) == "done "+keyID {
		// The servers may have changed the repository since: nothing is
		// copied again, only checked.
		if err := copyKeys(c.from, c.data); err != nil {
			return err
		}
		res, err := verifyTarget(ctx, dst, key)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "already migrated (signing key %s); nothing copied; %d blocks named by the manifests are all there\n", keyID, res.Named)
		return nil
	}
	present, keys, err := preflight(ctx, src, meta, dst, keyID, state)
	if err != nil {
		return err
	}
	// Claim the target: the signing key's record and an unfinished
	// migration, which keeps servers from starting on it meanwhile.
	claim := []blockstore.MetaOp{{Key: migrationKey, Value: []byte("incomplete " + keyID), Check: true, Old: state}}
	if _, err := meta.GetMeta(ctx, repoKeyKey); errors.Is(err, blockstore.ErrNotFound) {
		claim = append(claim, blockstore.MetaOp{Key: repoKeyKey, Value: []byte(keyID), Check: true})
	} else if err != nil {
		return err
	}
	if err := meta.CommitMeta(ctx, claim...); err != nil {
		return fmt.Errorf("claiming the target (another dvfs migrate or server at work on it?): %w", err)
	}
	// The keys go first: a server started on --data meanwhile says that
	// the migration has not finished, not that its fresh key is not the
	// repository's.
	if err := copyKeys(c.from, c.data); err != nil {
		return err
	}

	st := migrateStats{keys: keys}
	if err := copyBlocks(ctx, src, dst, c.store, g.log, &st); err != nil {
		return err
	}
	if err := copyMeta(ctx, src, dst, present, mc, g.log, &st); err != nil {
		return err
	}
	res, err := verifyTarget(ctx, dst, key)
	if err != nil {
		return err
	}
	err = meta.CommitMeta(ctx, blockstore.MetaOp{Key: migrationKey, Value: []byte("done " + keyID), Check: true, Old: []byte("incomplete " + keyID)})
	if err != nil {
		return fmt.Errorf("recording the migration as done: %w", err)
	}
	fmt.Fprintf(out, "migrated %s: %d blocks (%d copied, %s; %d already there), %d metadata keys (%d copied, %d already there), signing key %s; %d blocks named by the manifests are all there\n",
		c.from, st.blocks, st.copied, humanize.IBytes(uint64(st.bytes)), st.skipped, st.keys, st.keysCopied, st.keys-st.keysCopied, keyID, res.Named)
	if c.data == "" {
		fmt.Fprintf(out, "copy %s, %s and %s from %s into each distributed server's data directory\n", server.KeyFile, server.PubKeyFile, server.AdminTokenFile, c.from)
	}
	return nil
}

// loadSourceKey reads the signing key of the data directory dir, which
// must have one.
func loadSourceKey(dir string) (ed25519.PrivateKey, string, error) {
	if _, err := os.Stat(filepath.Join(dir, server.KeyFile)); err != nil {
		return nil, "", fmt.Errorf("--from %s: no %s: not the data directory of a dvfs server (%w)", dir, server.KeyFile, err)
	}
	key, _, err := server.LoadOrCreateKey(dir)
	if err != nil {
		return nil, "", fmt.Errorf("--from %s: %w", dir, err)
	}
	return key, manifest.KeyID(key.Public().(ed25519.PublicKey)), nil
}

// checkNewDataDir refuses a --data that is --from (its store holds the
// local metadata, which a server over etcd refuses) or that holds
// another server's key or admin token.
func checkNewDataDir(from, data string) error {
	a, err := filepath.Abs(from)
	if err != nil {
		return err
	}
	b, err := filepath.Abs(data)
	if err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("--data %s is --from: give the distributed server a data directory of its own", data)
	}
	for _, f := range []string{server.KeyFile, server.PubKeyFile, server.AdminTokenFile} {
		have, err := os.ReadFile(filepath.Join(data, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		want, err := os.ReadFile(filepath.Join(from, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !bytes.Equal(have, want) {
			return fmt.Errorf("--data %s holds a %s that is not the one in %s: another server's data directory", data, f, from)
		}
	}
	return nil
}

// copyKeys copies the signing key and the admin token of from into data
// (nothing when data is empty).
func copyKeys(from, data string) error {
	if data == "" {
		return nil
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	for _, f := range []string{server.KeyFile, server.PubKeyFile, server.AdminTokenFile} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if errors.Is(err, os.ErrNotExist) && f == server.AdminTokenFile {
			continue // tokens made by hand only
		}
		if err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if f == server.PubKeyFile {
			mode = 0o644
		}
		if err := diskio.WriteFileSync(filepath.Join(data, f), b, mode); err != nil {
			return err
		}
	}
	return nil
}

// openSource opens the store of the data directory dir, which no server
// may hold open, and checks that its metadata is its own.
func openSource(ctx context.Context, dir string, log *slog.Logger) (*badgerstore.Store, error) {
	path := filepath.Join(dir, "store")
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--from %s: no store: %w", dir, err)
	}
	src, err := badgerstore.Open(path, badgerstore.Config{Logger: log})
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("--from %s: its store is in use: stop the dvfs serve running on it first (%w)", dir, err)
		}
		return nil, fmt.Errorf("--from %s: %w", dir, err)
	}
	b, err := src.GetMeta(ctx, metaBindingKey)
	switch {
	case err == nil && string(b) != "local":
		src.Close()
		return nil, fmt.Errorf("--from %s: its metadata is already in %s, not in the data directory: nothing to migrate", dir, b)
	case err != nil && !errors.Is(err, blockstore.ErrNotFound):
		src.Close()
		return nil, err
	}
	// A server started with --store and no --meta keeps the object
	// store's index here, the repository's keys under s3store's prefix.
	found := errors.New("found")
	err = src.ListMeta(ctx, "utok/", func(string, []byte) error { return found })
	if errors.Is(err, found) {
		src.Close()
		return nil, fmt.Errorf("--from %s: its blocks are in an object store already (serve --store without --meta): dvfs migrate moves a data directory that holds its blocks", dir)
	}
	if err != nil {
		src.Close()
		return nil, err
	}
	return src, nil
}

// preflight reads the source's metadata and compares it with the
// target's, changing nothing: the target must be empty, or hold this
// repository's signing key and part of this repository's metadata (an
// interrupted migration), every key with the source's value. It returns
// the source's keys that the target holds already, and how many keys the
// source holds.
func preflight(ctx context.Context, src *badgerstore.Store, meta *etcdmeta.Store, dst *s3store.Store, keyID string, state []byte) (map[string]bool, int, error) {
	const refuse = "the target holds another repository; nothing was changed: "
	if state != nil && string(state) != "incomplete "+keyID {
		return nil, 0, fmt.Errorf(refuse+"a migration of another repository was made into it (%s)", state)
	}
	sk, err := meta.GetMeta(ctx, repoKeyKey)
	switch {
	case err == nil && string(sk) != keyID:
		return nil, 0, fmt.Errorf(refuse+"its signing key is %s, the source's %s", sk, keyID)
	case err != nil && !errors.Is(err, blockstore.ErrNotFound):
		return nil, 0, err
	}
	target := make(map[string][sha256.Size]byte)
	if err := dst.ListMeta(ctx, "", func(k string, v []byte) error {
		target[k] = sha256.Sum256(v)
		return nil
	}); err != nil {
		return nil, 0, err
	}
	var (
		present  = make(map[string]bool)
		differ   []string
		sourceNo int
	)
	err = src.ListMeta(ctx, "", func(k string, v []byte) error {
		if k == metaBindingKey {
			return nil // the data directory's own
		}
		sourceNo++
		sum, ok := target[k]
		delete(target, k)
		switch {
		case !ok:
		case sum != sha256.Sum256(v):
			differ = append(differ, k)
		default:
			present[k] = true
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	if len(differ) > 0 || len(target) > 0 {
		var extra string
		for k := range target {
			extra = k
			break
		}
		return nil, 0, fmt.Errorf(refuse+"%d of its metadata keys have other values than the source's (%s), %d are not in the source (%s); "+
			"it is another repository, or servers have run on it (a target they made is emptied by deleting its etcd prefix and its objects)", len(differ), strings.Join(first(differ, 3), ", "), len(target), extra)
	}
	return present, sourceNo, nil
}

func first(s []string, n int) []string { return s[:min(len(s), n)] }

// migrateBatch is how many blocks copyBlocks reads between looks at the
// clock for its progress line.
const migrateBatch = 1024

// migratePuts is how many Puts copyBlocks keeps in flight: each writes
// a pack to the object store and commits its index to etcd, and a
// round trip each way is what one Put waits on.
const migratePuts = 4

// copyBlocks copies every block of src that dst lacks, each verified
// against its ID as it is read, in Puts of about a pack, migratePuts at
// once.
func copyBlocks(ctx context.Context, src *badgerstore.Store, dst *s3store.Store, sc storeConfig, log *slog.Logger, st *migrateStats) error {
	packSize := int64(s3store.DefaultPackSize)
	if cfg, err := parseStoreURL(sc.url); err == nil && cfg.PackSize > 0 {
		packSize = cfg.PackSize
	}
	var ids []blockstore.ID
	if err := src.Walk(ctx, func(id blockstore.ID) error { ids = append(ids, id); return nil }); err != nil {
		return fmt.Errorf("listing the source's blocks: %w", err)
	}
	st.blocks = len(ids)
	// What the target holds, in one listing of its index: asking for
	// each block was a round trip to etcd each.
	have := make(map[blockstore.ID]struct{})
	if err := dst.Walk(ctx, func(id blockstore.ID) error { have[id] = struct{}{}; return nil }); err != nil {
		return fmt.Errorf("listing the target's blocks: %w", err)
	}
	log.Info("copying blocks", "blocks", len(ids), "in_target", len(have))
	puts, pctx := errgroup.WithContext(ctx)
	puts.SetLimit(migratePuts)
	var (
		mu        sync.Mutex // guards st's block counts while Puts run
		batch     []blockstore.Block
		batchSize int64
		lastLog   = time.Now()
	)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b, n := batch, batchSize
		batch, batchSize = nil, 0
		puts.Go(func() error {
			if err := dst.Put(pctx, b...); err != nil {
				return fmt.Errorf("writing blocks into the object store: %w", err)
			}
			mu.Lock()
			st.copied += len(b)
			st.bytes += n
			mu.Unlock()
			log.Debug("put blocks", "blocks", len(b), "bytes", n)
			return nil
		})
	}
	read := func() error {
		for done := 0; done < len(ids); done += migrateBatch {
			chunk := ids[done:min(done+migrateBatch, len(ids))]
			for _, id := range chunk {
				if _, ok := have[id]; ok {
					mu.Lock()
					st.skipped++
					mu.Unlock()
					continue
				}
				frame, err := src.GetFrame(pctx, id, nil)
				if err != nil {
					return fmt.Errorf("reading block %s from the source: %w", id, err)
				}
				batch = append(batch, blockstore.Block{ID: id, Frame: frame})
				batchSize += int64(len(frame))
				if batchSize >= packSize {
					flush()
				}
			}
			if time.Since(lastLog) > 5*time.Second {
				mu.Lock()
				log.Info("copying blocks", "done", done+len(chunk), "of", len(ids), "copied", st.copied, "skipped", st.skipped, "bytes", st.bytes)
				mu.Unlock()
				lastLog = time.Now()
			}
		}
		flush()
		return nil
	}
	readErr := read()
	// A failed Put cancels pctx, and the reads with it: its error says
	// why, not the cancellation.
	if err := puts.Wait(); err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	log.Info("copied blocks", "copied", st.copied, "skipped", st.skipped, "bytes", st.bytes)
	return nil
}

// metaOpOverhead is what one op adds to an etcd request besides its key
// (written and compared) and value, with room to spare.
const metaOpOverhead = 64

// copyMeta writes the keys of src's metadata that are not in present
// into dst, each on the condition that it is still absent, in commits
// within the cluster's --max-txn-ops and --max-request-bytes. The source
// is read as it is written, so its values are never all in memory.
func copyMeta(ctx context.Context, src *badgerstore.Store, dst *s3store.Store, present map[string]bool, mc etcdmeta.Config, log *slog.Logger, st *migrateStats) error {
	budget := mc.MaxRequestBytes * 3 / 4
	var (
		ops  []blockstore.MetaOp
		size int
	)
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := dst.CommitMeta(ctx, ops...); err != nil {
			return fmt.Errorf("writing metadata into etcd: %w", err)
		}
		st.keysCopied += len(ops)
		log.Debug("committed metadata", "keys", len(ops))
		ops, size = ops[:0], 0
		return nil
	}
	err := src.ListMeta(ctx, "", func(k string, v []byte) error {
		if k == metaBindingKey || present[k] {
			return nil
		}
		n := 2*(len(mc.Prefix)+len(k)) + len(v) + metaOpOverhead
		if n > budget {
			return fmt.Errorf("metadata key %s holds %d bytes, more than the cluster takes in one request: raise its --max-request-bytes (and --meta's max-request-bytes)", k, len(v))
		}
		if len(ops) == mc.MaxTxnOps || size+n > budget {
			if err := flush(); err != nil {
				return err
			}
		}
		value := bytes.Clone(v)
		if value == nil {
			value = []byte{} // an empty value; nil would delete the key
		}
		ops = append(ops, blockstore.MetaOp{Key: k, Value: value, Check: true})
		size += n
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	log.Info("copied metadata", "keys", st.keysCopied)
	return nil
}

// verifyTarget checks that the target holds every block its manifests
// name.
func verifyTarget(ctx context.Context, dst *s3store.Store, key ed25519.PrivateKey) (repo.CheckResult, error) {
	r, err := repo.New(repo.Config{Store: dst, Key: key})
	if err != nil {
		return repo.CheckResult{}, err
	}
	res, err := r.CheckBlocks(ctx)
	if err != nil {
		return res, fmt.Errorf("checking the target: %w", err)
	}
	if len(res.Missing) > 0 {
		return res, fmt.Errorf("checking the target: %d of the %d blocks its manifests name are missing (block %s first)", len(res.Missing), res.Named, res.Missing[0])
	}
	return res, nil
}
