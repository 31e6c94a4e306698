package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/metrics"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// mountConfig holds the flags of dvfs mount.
type mountConfig struct {
	cache        string        // the workstation's cache directory
	cacheSize    string        // limit of cached template blocks
	allowOther   bool          // let other local users into the mount
	shareClones  bool          // open the clones directory to other local users
	fillRate     string        // background unicast fill of missed sessions, bytes/s
	debug        bool          // log every FUSE request
	multicast    bool          // join the server's multicast sessions
	mcIface      string        // interface to receive multicast on
	syncInterval time.Duration // how often clone changes are sealed and uploaded
	flushTimeout time.Duration // how long an unmount waits for the final upload
	minFree      string        // free space kept on the cache disk
	readAhead    string        // the kernel's readahead for the mount
	mapUIDs      []string      // LOCAL:STORED user ID pairs
	mapGIDs      []string      // LOCAL:STORED group ID pairs
	fuse         string        // the FUSE adapter (mount_adapter.go)
	windowsNames bool          // show names as Windows can open them, found whatever their case
	ops          opsConfig
}

func newMountCmd(g *globals) *cobra.Command {
	var c mountConfig
	cmd := &cobra.Command{
		Use:   "mount --cache DIR MOUNTPOINT",
		Short: "Mount templates (read-only) and your clones (read-write) at MOUNTPOINT",
		Long: `Mount shows templates/NAME/ (latest version), templates/NAME@VERSION/ and
clones/CLONE/ under MOUNTPOINT, and serves them until SIGINT, SIGTERM or
'dvfs umount MOUNTPOINT'.

One dvfs mount per workstation owns the cache directory (a second one on the
same cache is refused): templates are cached once per machine, shared by every
user who logs in there. Run it at login with the user's token; each user's
clone overlays are kept apart inside the cache.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, c, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.cache, "cache", "", "workstation cache directory (created if absent)")
	f.StringVar(&c.cacheSize, "cache-size", "0", "most template data to cache, e.g. 200GiB (0: no limit but the disk)")
	f.BoolVar(&c.allowOther, "allow-other", false, "let other local users into the mount (kernel permission checks apply; the clones directory stays yours unless --share-clones)")
	f.BoolVar(&c.shareClones, "share-clones", false, "open the clones directory to other local users (with --allow-other); each file's mode decides the rest")
	f.BoolVar(&c.debug, "debug-fuse", false, "log every FUSE request")
	f.BoolVar(&c.multicast, "multicast", true, "join the server's multicast sessions to fill the cache")
	f.StringVar(&c.mcIface, "multicast-iface", "", "interface to receive multicast on (default: the system's choice)")
	f.StringVar(&c.fillRate, "fill-rate", "8MiB", "per second: templates whose multicast session this workstation missed are filled by unicast in the background at this rate (0: never)")
	f.DurationVar(&c.syncInterval, "sync-interval", 5*time.Second, "how often clone changes are sealed and uploaded (also at every fsync)")
	f.StringVar(&c.minFree, "min-free", "256MiB", "free space kept on the cache's disk: below it, writes into clones fail with ENOSPC (badger, which maps its files, must never meet a full disk)")
	f.StringVar(&c.readAhead, "readahead", humanize.IBytes(uint64(fs.DefaultReadAhead)), "how far the kernel reads ahead of a sequential reader of the mount (needs root; 0: the kernel's own, 128KiB): more speeds long sequential reads, and a cold cache fetches up to this much more than asked at the end of each run a program reads")
	f.DurationVar(&c.flushTimeout, "flush-timeout", 10*time.Minute, "how long unmounting waits for clone changes to reach the server")
	f.StringSliceVar(&c.mapUIDs, "map-uid", nil, "LOCAL:STORED: show the server's user ID STORED as LOCAL on this workstation, and store LOCAL as STORED (repeatable; other IDs are the same on both)")
	f.StringSliceVar(&c.mapGIDs, "map-gid", nil, "LOCAL:STORED: the same for group IDs")
	f.BoolVar(&c.windowsNames, "windows-names", runtime.GOOS == "windows", "show names Windows cannot open (a:b, CON, trailing dots) mapped, and find names whatever their case, as Windows does (default on Windows)")
	addAdapterFlag(f, &c.fuse)
	addOpsFlags(f, &c.ops)
	_ = cmd.MarkFlagRequired("cache")
	return cmd
}

// parseIDMap parses --map-uid or --map-gid values, LOCAL:STORED pairs.
func parseIDMap(flag string, pairs []string) (map[uint32]uint32, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	out := make(map[uint32]uint32, len(pairs))
	for _, p := range pairs {
		l, r, ok := strings.Cut(p, ":")
		local, err1 := strconv.ParseUint(l, 10, 32)
		stored, err2 := strconv.ParseUint(r, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--%s %q: want LOCAL:STORED, two numeric IDs", flag, p)
		}
		if _, dup := out[uint32(local)]; dup {
			return nil, fmt.Errorf("--%s: local ID %d is mapped twice", flag, local)
		}
		out[uint32(local)] = uint32(stored)
	}
	return out, nil
}

// parseReadAhead parses --readahead into an adapter's ReadAhead: bytes,
// or -1 for the kernel's own default.
func parseReadAhead(v string) (int, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("--readahead: %w", err)
	}
	switch {
	case n == 0:
		return -1, nil
	case n < 4<<10 || n > 64<<20:
		return 0, fmt.Errorf("--readahead %s: want 0 (the kernel's default) or 4KiB to 64MiB", v)
	}
	return int(n), nil
}

func runMount(ctx context.Context, g *globals, c mountConfig, mountpoint string) (err error) {
	limit, err := humanize.ParseBytes(c.cacheSize)
	if err != nil {
		return fmt.Errorf("--cache-size: %w", err)
	}
	fill, err := humanize.ParseBytes(c.fillRate)
	if err != nil {
		return fmt.Errorf("--fill-rate: %w", err)
	}
	fillRate := int64(fill)
	if fillRate == 0 {
		fillRate = -1 // never
	}
	minFree, err := humanize.ParseBytes(c.minFree)
	if err != nil {
		return fmt.Errorf("--min-free: %w", err)
	}
	readAhead, err := parseReadAhead(c.readAhead)
	if err != nil {
		return err
	}
	var ids fs.IDMap
	if ids.UIDs, err = parseIDMap("map-uid", c.mapUIDs); err != nil {
		return err
	}
	if ids.GIDs, err = parseIDMap("map-gid", c.mapGIDs); err != nil {
		return err
	}
	mountpoint, err = mountpointPath(mountpoint)
	if err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	cl, err := g.newClient()
	if err != nil {
		return err
	}
	who, err := cl.WhoAmI(ctx)
	if err != nil {
		return fmt.Errorf("asking the server who this token is: %w", err)
	}
	if err := os.MkdirAll(c.cache, 0o700); err != nil {
		return err
	}
	// Two badger stores: the block cache, whose blocks can always be
	// fetched again and so is not synced on every fill (a sync per fill
	// cost more than the fill), and the metadata (overlays, pinned
	// manifests), whose every commit is durable. Every block enters the
	// cache verified (by the client or the multicast receiver), so the
	// cache keeps it plain with a CRC (VerifiedPuts): a warm read is a
	// pread and a CRC, not a zstd decode and a BLAKE3 hash. Its packs are
	// written and read past the page cache (DirectWrites, DirectReads):
	// the kernel caches the mounted files' pages already.
	blockStore, err := badgerstore.Open(filepath.Join(c.cache, "blocks"), badgerstore.Config{Logger: g.log, Volatile: true, DirectWrites: true, DirectReads: true, VerifiedPuts: true})
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return fmt.Errorf("the cache %s is in use by another dvfs mount (one mount per workstation owns it): %w", c.cache, err)
		}
		return err
	}
	defer closeJoin(&err, blockStore)
	store, err := badgerstore.Open(filepath.Join(c.cache, "meta"), badgerstore.Config{Logger: g.log})
	if err != nil {
		return err
	}
	defer closeJoin(&err, store)
	// Template blocks stop being cached at twice the reserve: the band
	// above --min-free stays for the user's clone writes, which the
	// server has no other copy of.
	blocks, err := cache.New(ctx, cache.Config{Store: blockStore, Remote: cl, Limit: int64(limit), Logger: g.log,
		Dir: c.cache, Reserve: 2 * int64(minFree)})
	if err != nil {
		return err
	}
	defer blocks.Close()
	// Each user's overlays and catalog live under their own prefix; the
	// blocks are shared.
	userMeta := blockstore.PrefixMeta(store, "u/"+who.Name+"/")
	catalog, err := cache.NewCatalog(cache.CatalogConfig{Server: cl, Meta: userMeta, Logger: g.log, TTL: time.Second})
	if err != nil {
		return err
	}
	// The writeback's state and outbox live in the durable store, in the
	// user's prefix; its blocks (the outbox) in that store's block space.
	wbStore := struct {
		blockstore.Store
		blockstore.MetaStore
	}{store, userMeta}
	var core *fs.FS
	wb, err := writeback.New(writeback.Config{
		Server:   cl,
		Overlay:  overlayAdapter{fs: nil},
		Store:    wbStore,
		Blocks:   blocks,
		Holder:   holderName(c.cache),
		Interval: c.syncInterval,
		Logger:   g.log,
		Progress: func(clone string, done, total int64) {
			g.log.Info("uploading clone changes", "clone", clone, "blocks", fmt.Sprintf("%d/%d", done, total))
		},
		// Sealed blocks wait for the upload in files of their own, one
		// per seal, synced once (a synced badger batch was 10x slower).
		OutboxDir: filepath.Join(c.cache, "outbox", who.Name),
		// Seals may go further into the reserve than clone writes (they
		// are how written data leaves the disk), not all the way.
		OutboxReserve: int64(minFree) / 4,
	})
	if err != nil {
		return err
	}
	reads := &countingBlocks{Cache: blocks}
	core, err = fs.New(fs.Config{
		Blocks:   reads,
		Catalog:  catalogAdapter{c: catalog, wb: wb, blocks: blocks, filled: new(sync.Map)},
		Meta:     userMeta,
		StateDir: filepath.Join(c.cache, "overlay", who.Name),
		Logger:   g.log,
		OnSync:   wb.Synced,
		Writable: wb.Writable,
		MinFree:  int64(minFree),
		// Private unless shared: with --allow-other, other local
		// users see the templates, not this user's clones.
		ShareClones: c.shareClones,
		// What this user makes is theirs; clones made from a template
		// keep no owners and so show as theirs too.
		Owner:           mountOwner(),
		IDMap:           ids,
		MapNames:        c.windowsNames,
		CaseInsensitive: c.windowsNames,
	})
	if err != nil {
		return err
	}
	wb.SetOverlay(overlayAdapter{fs: core})
	// Before serving: overlays of clones another workstation moved on
	// are saved as conflict clones and dropped; what a crash left unsynced
	// starts uploading.
	if err := wb.Reconcile(ctx); err != nil {
		g.log.Error("reconciling local clone overlays with the server", "err", err)
	}
	reg := metrics.New(buildVersion())
	reg.EnableFUSE()
	srv, err := mountAdapter(c.fuse, mountpoint, core, adapterOptions{allowOther: c.allowOther, debug: c.debug, log: g.log, observe: reg.ObserveFUSE, readAhead: readAhead})
	if err != nil {
		wb.Close(context.Background())
		core.Close(context.Background())
		return err
	}
	var joiner *multicast.Joiner
	if c.multicast {
		ifi, _, err := interfaceIP(c.mcIface)
		if err != nil {
			return fmt.Errorf("--multicast-iface: %w", err)
		}
		joiner = multicast.NewJoiner(multicast.JoinerConfig{
			Sessions: cl.MulticastSessions, Manifest: catalog.Template, Store: blocks, Unicast: cl,
			Interface: ifi, Logger: g.log, FillRate: fillRate, FillStore: blocks.Filler(),
		})
		jctx, stopJoiner := context.WithCancel(ctx)
		defer stopJoiner()
		go joiner.Run(jctx)
	}
	// dvfs umount's request (POST /unmount): the way to end a WinFsp
	// mount from another process.
	asked := make(chan struct{})
	var askOnce sync.Once
	stopStatus, err := serveStatus(ctx, mountpoint, g.log, func(ctx context.Context, brief bool) mountStatus {
		cs := cl.Stats()
		st := mountStatus{Mountpoint: mountpoint, User: who.Name, Server: cs.Server, Servers: len(cl.Servers()), Failovers: cs.Failovers,
			Cache: blocks.Stats(), Clones: cloneStatuses(ctx, wb, blockStore, brief)}
		if !brief {
			st.Templates = templateFills(ctx, catalog, blockStore)
		}
		if joiner != nil {
			st.Multicast = joiner.Progress()
		}
		return st
	}, func() { askOnce.Do(func() { close(asked) }) })
	if err != nil {
		g.log.Warn("no status socket; dvfs status will not see this mount", "err", err)
	} else {
		defer stopStatus()
	}
	var mounted atomic.Bool
	mounted.Store(true)
	defer mounted.Store(false)
	stopMetrics, err := serveMetrics(g, c.ops, reg, mountMetrics(reg, mountParts{cache: blocks, reads: reads, client: cl, wb: wb, joiner: joiner, mounted: &mounted}))
	if err != nil {
		g.log.Error("no metrics listener", "err", err)
	} else {
		defer stopMetrics()
	}
	pidFile := mountPIDFile(mountpoint)
	pidLine := strconv.Itoa(os.Getpid()) + "\n"
	if err := os.WriteFile(pidFile, []byte(pidLine), 0o644); err != nil {
		g.log.Warn("cannot record the mount's pid; dvfs umount will not wait for the flush", "file", pidFile, "err", err)
	}
	defer removeOwnPIDFile(pidFile, pidLine)
	exitFile := mountExitFile(mountpoint)
	os.Remove(exitFile)
	defer func() { recordMountExit(exitFile, err) }()
	g.log.Info("mounted", "mountpoint", mountpoint, "user", who.Name, "cache", c.cache)

	unmounted := make(chan struct{})
	go func() { srv.Wait(); close(unmounted) }()
	why := ""
	select {
	case <-ctx.Done():
		why = "interrupted"
	case <-asked:
		why = "dvfs umount asked"
	case <-unmounted:
		g.log.Info("unmounted from outside", "mountpoint", mountpoint)
	}
	if why != "" {
		g.log.Info("unmounting", "mountpoint", mountpoint, "why", why)
		if err := srv.Unmount(); err != nil {
			g.log.Error("unmount failed; the mount stays until it is not busy", "err", err)
			<-unmounted
		}
	}
	mounted.Store(false) // /readyz: syncing the last changes, not serving
	// The kernel has let go and handed over every dirty page: seal and
	// upload what the clones hold, then close the overlays.
	flushCtx, cancel := context.WithTimeout(context.Background(), c.flushTimeout)
	defer cancel()
	g.log.Info("syncing clone changes to the server")
	wbErr := wb.Close(flushCtx)
	if wbErr != nil {
		g.log.Error("some clone changes are not on the server yet; they stay in the cache and sync at the next mount", "err", wbErr)
	}
	if err := core.Close(flushCtx); err != nil {
		return fmt.Errorf("flushing the overlays: %w", err)
	}
	if wbErr != nil {
		return fmt.Errorf("clone changes not synced: %w", wbErr)
	}
	g.log.Info("clean exit: overlays flushed and synced")
	return nil
}

// mountOwner owns what the mount makes: this user. Windows has no numeric
// user IDs (WinFsp shows every entry as the mounting user's whatever is
// stored), so there it is nobody, 65534, which --map-uid 65534:UID and
// --map-gid store as a Linux user's IDs.
func mountOwner() fs.Owner {
	if runtime.GOOS == "windows" {
		return fs.Owner{UID: 65534, GID: 65534}
	}
	return fs.Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
}

// mountPIDFile is where a mount records its pid, so dvfs umount can wait
// for the flush that follows the unmount.
func mountPIDFile(mountpoint string) string {
	sum := sha256.Sum256([]byte(mountpoint))
	dir := "/run/dvfs"
	if os.Getuid() != 0 {
		dir = filepath.Join(os.TempDir(), "dvfs-"+strconv.Itoa(os.Getuid()))
	}
	os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, hex.EncodeToString(sum[:8])+".pid")
}

func newUmountCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "umount MOUNTPOINT",
		Short: "Unmount and wait until the mount has flushed its overlays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp, err := mountpointPath(args[0])
			if err != nil {
				return err
			}
			pid := 0
			if b, err := os.ReadFile(mountPIDFile(mp)); err == nil {
				pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			// Unmounted already but still syncing: wait for it below.
			if err := checkMounted(mp); err != nil {
				if pid == 0 || !alive(pid) {
					return err
				}
			} else if err := unmount(mp); err != nil {
				return err
			}
			if pid == 0 {
				return nil
			}
			// The mount process syncs after the kernel lets go; wait for
			// it, showing what is still on its way to the server.
			last := ""
			for alive(pid) {
				select {
				case <-cmd.Context().Done():
					return errors.New("interrupted while the mount was still syncing (it goes on; run dvfs status)")
				case <-time.After(200 * time.Millisecond):
				}
				qctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
				st, err := queryStatus(qctx, statusSocket(mp), true)
				cancel()
				if err != nil {
					continue
				}
				for _, c := range st.Clones {
					if c.Pending {
						if line := fmt.Sprintf("syncing clone %s: %d blocks to upload", c.Clone, c.PendingBlocks); line != last {
							fmt.Println(line)
							last = line
						}
					}
				}
			}
			if err := mountExitError(mp); err != nil {
				return err
			}
			fmt.Printf("unmounted %s; every clone change is on the server\n", mp)
			return nil
		},
	}
}
