package main

// What an admin watches a server or a mount with: the metrics listener
// (/metrics, /healthz, /readyz), wired to the parts' Stats.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/metrics"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// opsConfig holds the flags serve and mount share for operations.
type opsConfig struct {
	metricsListen string // address of the metrics listener; "" none
}

func addOpsFlags(f *pflag.FlagSet, c *opsConfig) {
	f.StringVar(&c.metricsListen, "metrics-listen", "", "serve Prometheus metrics (/metrics), /healthz and /readyz on this address, e.g. :9420 (empty: none)")
}

// serveMetrics serves reg on c.metricsListen until stop is called; with
// no address it does nothing.
func serveMetrics(g *globals, c opsConfig, reg *metrics.Registry, ready func() error) (stop func(), err error) {
	if c.metricsListen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", c.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	srv := &http.Server{Handler: reg.Handler(ready), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	g.log.Info("serving metrics", "url", fmt.Sprintf("http://%s/metrics", ln.Addr()))
	return func() { srv.Close() }, nil
}

// serverMetrics wires a server's parts to a registry; ready says the
// server serves and its store answers.
func serverMetrics(s *server.Server, r *repo.Repo, mc server.Multicast, serving *atomic.Bool) (*metrics.Registry, func() error) {
	reg := metrics.New(buildVersion())
	src := metrics.ServerSources{Requests: s.Stats, Repo: r.Stats, Background: s.Background}
	if sessions, ok := mc.(*multicast.Sessions); ok && sessions != nil {
		src.Multicast = sessions.Stats
	}
	reg.Register(metrics.Server(src))
	ready := func() error {
		if !serving.Load() {
			return errors.New("not serving (starting or shutting down)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := r.List(ctx); err != nil {
			return fmt.Errorf("the store does not answer: %w", err)
		}
		return nil
	}
	return reg, ready
}

// mountParts are what a mount's metrics read.
type mountParts struct {
	cache   *cache.Cache
	reads   *countingBlocks
	client  *client.Client
	wb      *writeback.Writeback
	joiner  *multicast.Joiner // nil without --multicast
	mounted *atomic.Bool
}

// recentAnswer is how long a server's answer counts as recent for
// /readyz; past it, readiness asks the server.
const recentAnswer = 30 * time.Second

// mountMetrics wires a mount's parts to reg; ready says the mount is
// mounted and the server answered recently.
func mountMetrics(reg *metrics.Registry, p mountParts) func() error {
	src := metrics.WorkstationSources{
		Cache: p.cache.Stats, ReadBytes: p.reads.read.Load, Client: p.client.Stats, Writeback: p.wb.Stats,
		Clones: func() []writeback.Status {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return p.wb.Status(ctx)
		},
	}
	if p.joiner != nil {
		src.Joiner, src.Sessions = p.joiner.Stats, p.joiner.Progress
	}
	reg.Register(metrics.Workstation(src))
	return func() error {
		if !p.mounted.Load() {
			return errors.New("not mounted")
		}
		if last := p.client.Stats().LastAnswer; time.Since(last) < recentAnswer {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := p.client.WhoAmI(ctx); err != nil {
			return fmt.Errorf("the server does not answer: %w", err)
		}
		return nil
	}
}

// countingBlocks counts the bytes the filesystem reads through the cache.
type countingBlocks struct {
	*cache.Cache
	read atomic.Int64
}

func (c *countingBlocks) ReadBlock(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	b, err := c.Cache.ReadBlock(ctx, id, dst)
	if err == nil {
		c.read.Add(int64(len(b) - len(dst)))
	}
	return b, err
}

func (c *countingBlocks) ReadBlocks(ctx context.Context, ids []blockstore.ID, size int, dst []byte) error {
	err := c.Cache.ReadBlocks(ctx, ids, size, dst)
	if err == nil {
		c.read.Add(int64(len(ids) * size))
	}
	return err
}
