package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// serveConfig holds the flags of dvfs serve.
type serveConfig struct {
	data    string // data directory: store, keys, admin token
	meta    string // etcd://... : the repository's metadata in etcd
	listen  string // address to listen on
	tlsCert string // PEM certificate; with tlsKey, serve HTTPS
	tlsKey  string // PEM private key of tlsCert
	mc      multicastConfig
	gcEvery time.Duration // automatic garbage collection interval
	// Per-user quotas (humanize sizes; "0" means none).
	quotaPending, quotaClone string
	// groups are the server's own groups, GROUP=USER,USER each.
	groups  []string
	limits  server.Limits
	minRate string // limits.MinRate, e.g. 64KiB
	bodyMem string // limits.BodyMemory, e.g. 512MiB
	bgRate  string // limits.BackgroundRate, e.g. 16MiB
	memory  string // the Go runtime's soft memory limit; "auto": --body-memory + 512MiB
	minFree string // free space kept on the store's disk: uploads are refused below it
	ops     opsConfig
	ldap    ldapConfig
	store   storeConfig
}

func newServeCmd(g *globals) *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve --data DIR [--listen ADDR]",
		Short: "Run the template repository server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.data, "data", "", "data directory (created if absent)")
	f.StringVar(&c.listen, "listen", ":7420", "address to listen on")
	f.StringVar(&c.meta, "meta", "", "keep the repository's metadata (versions, clones, leases, tokens) in etcd: "+
		"etcd://[USER@]HOST:PORT,HOST:PORT/PREFIX[?max-txn-ops=N&max-request-bytes=N], the password in $"+etcdPasswordEnv+" (empty: in the data directory's store)")
	f.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate (PEM); serve HTTPS with --tls-key")
	f.StringVar(&c.tlsKey, "tls-key", "", "TLS private key (PEM)")
	f.StringVar(&c.mc.group, "multicast-group", "", "multicast group IP:port for template sessions, e.g. 239.255.42.42:7421 (empty: no multicast)")
	f.StringVar(&c.mc.iface, "multicast-iface", "", "interface to send multicast on (default: by the routing table)")
	f.StringVar(&c.mc.rate, "multicast-rate", "1gbit", "maximum multicast rate")
	f.IntVar(&c.mc.packetSize, "multicast-packet-size", 0, "largest UDP payload (default 1472 for a 1500-byte MTU; 8972 for jumbo frames)")
	f.BoolVar(&c.mc.encrypt, "multicast-encrypt", false, "encrypt session payloads (AES-GCM; keys go to workstations over the API)")
	f.BoolVar(&c.mc.onPublish, "multicast-on-publish", true, "send every newly published version by multicast")
	f.IntVar(&c.mc.receivers, "multicast-receivers", 0, "start a session as soon as this many workstations have joined it "+
		"(0, or fewer join: when its join window of a few seconds ends)")
	f.DurationVar(&c.mc.every, "multicast-every", 0, "also send every template's latest version this often (0: only on publish and push)")
	f.DurationVar(&c.gcEvery, "gc-every", repo.DefaultGCEvery, "collect unreferenced blocks (uploads no commit named within the grace, removed clones' data) this often (0: only when an admin runs dvfs template gc)")
	f.StringVar(&c.quotaPending, "quota-pending", "64GiB", "per user: bytes uploaded that no commit names yet (0: no bound); more than the largest generation a workstation syncs at once")
	f.StringVar(&c.quotaClone, "quota-clone", "0", "per user, unless an admin set theirs (dvfs quota set): the data of their clones that no template holds, counted in 64 KiB blocks (0: no bound)")
	f.StringArrayVar(&c.groups, "group", nil, "a group of users, GROUP=USER,USER,... (repeat for more groups): clones shared with GROUP are readable by its members, besides the groups their tokens carry")
	d := server.DefaultLimits
	f.IntVar(&c.limits.MaxConns, "max-conns", d.MaxConns, "most open client connections; at the bound a new one closes the one idle longest")
	f.DurationVar(&c.limits.HeaderTimeout, "header-timeout", d.HeaderTimeout, "time a client has to send a request's headers (and a TLS handshake)")
	f.DurationVar(&c.limits.IdleTimeout, "idle-timeout", d.IdleTimeout, "close a connection idle this long between requests")
	f.StringVar(&c.minRate, "min-rate", humanize.IBytes(uint64(d.MinRate)), "slowest a request body may arrive, and a response be read, per second, after --grace")
	f.DurationVar(&c.limits.Grace, "grace", d.Grace, "time a body or a response write gets before --min-rate counts")
	f.StringVar(&c.bodyMem, "body-memory", humanize.IBytes(uint64(d.BodyMemory)), "most request body bytes held by all requests at once; one user holds at most a quarter (or one body)")
	f.DurationVar(&c.limits.BodyWait, "body-wait", d.BodyWait, "how long a request waits for --body-memory before it gets 503 (the server's is taken) or 429 (its user's share is)")
	f.StringVar(&c.bgRate, "background-rate", humanize.IBytes(uint64(d.BackgroundRate)), "most block bytes a second sent to workstations filling their caches in the background (a clone opened before multicast filled the cache, a session missed), all together; they also wait while readers' fetches are answered")
	f.IntVar(&c.limits.BackgroundFetches, "background-fetches", d.BackgroundFetches, "most background fetches answered at once; the others wait their turn")
	f.StringVar(&c.minFree, "min-free", "256MiB", "free space kept on the store's disk: an upload that would go below it is refused (507); workstations keep their changes and retry, a publish fails saying so (badger, which maps its files, must never meet a full disk)")
	f.StringVar(&c.memory, "memory-limit", "auto", "soft limit of the server's memory, the Go runtime's (GOMEMLIMIT, when set, wins); auto: --body-memory + 512MiB")
	addOpsFlags(f, &c.ops)
	addLDAPFlags(f, &c.ldap)
	addStoreFlags(f, &c.store)
	_ = cmd.MarkFlagRequired("data")
	return cmd
}

// limits parses the limit flags and lowers --max-conns to what the
// process's open-file limit leaves beside the store's files.
func (c *serveConfig) parseLimits(g *globals) (server.Limits, error) {
	l := c.limits
	rate, err := humanize.ParseBytes(c.minRate)
	if err != nil || rate == 0 {
		return l, fmt.Errorf("--min-rate %q: want a size a second, e.g. 64KiB", c.minRate)
	}
	mem, err := humanize.ParseBytes(c.bodyMem)
	if err != nil || mem == 0 {
		return l, fmt.Errorf("--body-memory %q: want a size, e.g. 512MiB", c.bodyMem)
	}
	bg, err := humanize.ParseBytes(c.bgRate)
	if err != nil || bg == 0 {
		return l, fmt.Errorf("--background-rate %q: want a size a second, e.g. 16MiB", c.bgRate)
	}
	if l.BackgroundFetches <= 0 {
		return l, fmt.Errorf("--background-fetches %d: want at least 1", l.BackgroundFetches)
	}
	l.MinRate, l.BodyMemory, l.BackgroundRate = int64(rate), int64(mem), int64(bg)
	// Without a limit the Go heap grows to twice what is live before it
	// collects, and keeps it: bodies of --body-memory made a server of
	// twice that, and more.
	if os.Getenv("GOMEMLIMIT") == "" {
		limit := l.BodyMemory + 512<<20
		if c.memory != "auto" {
			m, err := humanize.ParseBytes(c.memory)
			if err != nil || m == 0 {
				return l, fmt.Errorf("--memory-limit %q: want a size, e.g. 1GiB, or auto", c.memory)
			}
			limit = int64(m)
		}
		debug.SetMemoryLimit(limit)
	}
	if l.MaxConns <= 0 {
		return l, fmt.Errorf("--max-conns %d: want at least 1", l.MaxConns)
	}
	// Go raised the soft limit to the hard one at start.
	if nofile, ok := openFileLimit(); ok {
		const reserve = 1024 // the store's files, multicast sockets, the log
		if avail := int64(nofile) - reserve; int64(l.MaxConns) > avail {
			lowered := int(max(avail, 64))
			g.log.Warn("--max-conns lowered to fit the open-file limit (raise LimitNOFILE)", "max_conns", lowered, "nofile", nofile)
			l.MaxConns = lowered
		}
	}
	return l, nil
}

func runServe(ctx context.Context, g *globals, c serveConfig) (err error) {
	if errServeHere != nil {
		return errServeHere
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	limits, err := c.parseLimits(g)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return err
	}
	key, fresh, err := server.LoadOrCreateKey(c.data)
	if err != nil {
		return err
	}
	pubKey := manifest.KeyID(key.Public().(ed25519.PublicKey))
	if fresh {
		g.log.Info("made a new signing key; workstations trust its public half", "file", filepath.Join(c.data, server.PubKeyFile), "key_id", pubKey)
	}
	// Uploads are written past the page cache: a publish writes gigabytes
	// that nothing reads back soon (the compressor reads each block once),
	// and copying them into fresh page cache was the largest CPU cost of a
	// publish on this project's 2-core VM (copy_folio_from_iter_atomic,
	// 39% of all samples in perf; a 2 GiB publish took 4.9-5.4 s buffered
	// against 4.0-4.1 s direct).
	store, err := badgerstore.Open(filepath.Join(c.data, "store"), badgerstore.Config{Logger: g.log, DirectWrites: true})
	if err != nil {
		return err
	}
	if err := bindMeta(ctx, store, metaBinding(c.meta)); err != nil {
		store.Close()
		return err
	}
	var rstore repo.Store = store
	if c.meta != "" {
		meta, err := openMeta(ctx, c.meta, g.log)
		if err != nil {
			store.Close()
			return err
		}
		rstore = metaStore{Store: store, meta: meta}
		if err := checkSigningKey(ctx, meta, pubKey); err != nil {
			rstore.Close()
			return err
		}
		if err := checkMigrated(ctx, meta); err != nil {
			rstore.Close()
			return err
		}
	}
	// A store that cannot close (badger could not write out its memtable:
	// its directory gone, a disk failing writes) fails the exit: a clean
	// exit code would say all was written.
	defer closeJoin(&err, rstore)
	rcfg := repo.Config{Store: rstore, Key: key, Logger: g.log}
	if c.store.url != "" {
		if rcfg.Store, err = openObjectStore(ctx, c.store, rstore, c.meta, g.log); err != nil {
			return err
		}
		defer closeJoin(&err, rcfg.Store)
	}
	minFree, err := quotaFlag("--min-free", c.minFree)
	if err != nil {
		return err
	}
	storeDir, local := filepath.Join(c.data, "store"), c.store.url == ""
	rcfg.Room = func(need int64) error {
		if !local {
			need = 0 // the blocks go to the object store; only metadata stays here
		}
		return diskio.CheckFree(storeDir, need, minFree)
	}
	if rcfg.PendingQuota, err = quotaFlag("--quota-pending", c.quotaPending); err != nil {
		return err
	}
	if rcfg.PendingQuota == 0 {
		rcfg.PendingQuota = -1 // 0 in repo.Config is the default
	}
	if rcfg.CloneQuota, err = quotaFlag("--quota-clone", c.quotaClone); err != nil {
		return err
	}
	r, err := repo.New(rcfg)
	if err != nil {
		return err
	}
	// Uploads answered are stored before the store closes.
	defer r.Settle(context.Background())
	// Blocks uploaded uncompressed (a publish on this machine) are
	// compressed while uploads are idle.
	loopCtx, stopLoop := context.WithCancel(ctx)
	compressed := make(chan struct{})
	go func() { defer close(compressed); r.CompressLoop(loopCtx, repo.DefaultCompressIdle) }()
	collected := make(chan struct{})
	go func() { defer close(collected); r.GCLoop(loopCtx, c.gcEvery) }()
	defer func() { stopLoop(); <-compressed; <-collected }()
	tokenFile, err := server.EnsureAdminToken(ctx, r, c.data)
	if err != nil {
		return err
	}
	if tokenFile != "" {
		g.log.Info("wrote the first admin token", "file", tokenFile)
	}

	groups, err := parseGroups(c.groups)
	if err != nil {
		return err
	}
	scfg := server.Config{Repo: r, Logger: g.log, Limits: limits, Groups: groups,
		DirectoryRecheck: c.ldap.recheck, DirectoryGrace: c.ldap.grace, LoginLifetime: c.ldap.tokenExpires}
	if scfg.Directory, err = c.ldap.directory(); err != nil {
		return err
	}
	if scfg.Directory != nil {
		g.log.Info("users log in through the directory", "url", c.ldap.dir.URL, "admin_group", c.ldap.dir.AdminGroup, "recheck", c.ldap.recheck)
	}
	if c.mc.group != "" {
		sessions, err := startMulticast(ctx, g, c.mc, r)
		if err != nil {
			return err
		}
		scfg.Multicast, scfg.PushOnPublish = sessions, c.mc.onPublish
	}
	tcpLn, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	hs := server.New(scfg)
	// With --meta, learn of other servers' commits as they happen: their
	// new versions start this server's lab's sessions too.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		if err := hs.WatchCatalog(watchCtx); err != nil && watchCtx.Err() == nil {
			g.log.Error("no longer watching the repository's catalog", "err", err)
		}
	}()
	ln, srv := hs.Listen(tcpLn)
	var serving atomic.Bool
	reg, ready := serverMetrics(hs, r, scfg.Multicast, &serving)
	stopMetrics, err := serveMetrics(g, c.ops, reg, ready)
	if err != nil {
		return err
	}
	defer stopMetrics()
	scheme := "http"
	if c.tlsCert != "" {
		scheme = "https"
	} else if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		g.log.Warn("serving plain HTTP beyond loopback: tokens (and dvfs login's passwords) cross the network in the clear; give --tls-cert and --tls-key")
	}
	g.log.Info("serving", "url", fmt.Sprintf("%s://%s", scheme, ln.Addr()), "data", c.data, "key_id", pubKey)

	errc := make(chan error, 1)
	serving.Store(true)
	defer serving.Store(false)
	go func() {
		if c.tlsCert != "" {
			errc <- srv.ServeTLS(ln, c.tlsCert, c.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	g.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

// parseGroups parses --group flags, GROUP=USER,USER each.
func parseGroups(flags []string) (map[string][]string, error) {
	out := make(map[string][]string)
	for _, f := range flags {
		name, members, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--group %q: want GROUP=USER,USER,...", f)
		}
		for _, m := range strings.Split(members, ",") {
			if m = strings.TrimSpace(m); m != "" {
				out[name] = append(out[name], m)
			}
		}
	}
	if err := server.ValidGroups(out); err != nil {
		return nil, fmt.Errorf("--group: %w", err)
	}
	return out, nil
}

// quotaFlag parses a quota size flag.
func quotaFlag(flag, v string) (int64, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<62 {
		return 0, fmt.Errorf("%s %q: not a size", flag, v)
	}
	return int64(n), nil
}
