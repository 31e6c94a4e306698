package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// mountStatus is what a running mount reports to dvfs status.
type mountStatus struct {
	Mountpoint string `json:"mountpoint"`
	User       string `json:"user"`
	Server     string `json:"server,omitempty"` // the server the mount uses now
	// Servers counts those it was given (--server); Failovers the times it
	// moved to the next.
	Servers   int                      `json:"servers,omitempty"`
	Failovers int64                    `json:"failovers,omitempty"`
	Cache     cache.Stats              `json:"cache"`
	Templates []templateFill           `json:"templates"`
	Clones    []cloneStatus            `json:"clones"`
	Multicast []multicast.JoinProgress `json:"multicast,omitempty"`
	// HiddenClones counts the clones left out for a caller they do not
	// belong to (status_peer.go).
	HiddenClones int `json:"hidden_clones,omitempty"`
}

// cloneStatus is a clone's writeback status and how much of it the cache
// holds.
type cloneStatus struct {
	writeback.Status
	Blocks int `json:"blocks"`
	Cached int `json:"cached"`
}

type templateFill struct {
	Template string `json:"template"`
	Blocks   int    `json:"blocks"`
	Cached   int    `json:"cached"`
}

// statusSocket is where a mount answers dvfs status.
func statusSocket(mountpoint string) string {
	return strings.TrimSuffix(mountPIDFile(mountpoint), ".pid") + ".sock"
}

// serveStatus answers on the mount's status socket until ctx ends: its
// status to anyone, and POST /unmount from the mount's own user or root
// (mayUnmount), which calls unmount: how dvfs umount ends a mount where
// no other process can (WinFsp's), the mount then syncing and exiting as
// on Ctrl+C.
func serveStatus(ctx context.Context, mountpoint string, log *slog.Logger, report func(ctx context.Context, brief bool) mountStatus, unmount func()) (func(), error) {
	path := statusSocket(mountpoint)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	// Every local user may ask; each sees only their own clones.
	os.Chmod(path, 0o666)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// ?brief: only what dvfs umount polls for (the clones' pending
		// changes), without counting the cached blocks of every template
		// and clone, which costs the mount a scan of its index each time.
		json.NewEncoder(w).Encode(forCaller(r.Context(), report(r.Context(), r.URL.Query().Has("brief"))))
	})
	mux.HandleFunc("POST /unmount", func(w http.ResponseWriter, r *http.Request) {
		if who, ok := mayUnmount(r.Context()); !ok {
			log.Warn("refused an unmount request from another user", "uid", who)
			http.Error(w, "only the user who mounted it, or root, may unmount it", http.StatusForbidden)
			return
		}
		log.Info("dvfs umount asked to unmount")
		unmount()
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{ConnContext: withPeer, Handler: mux}
	go srv.Serve(ln)
	return func() { srv.Close(); os.Remove(path) }, nil
}

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [MOUNTPOINT]",
		Short: "Show a mount's clones (unsynced changes, lease) and template cache fill",
		Long: `Status shows each mount running here (or the one at MOUNTPOINT): its cache,
the templates' cache fill, multicast sessions, and the clones with their
sync state and lease. A user sees the clones of their own mounts; root
sees every mount's.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp := ""
			if len(args) == 1 {
				mp = args[0]
			}
			socks := statusSockets(mp)
			if len(socks) == 0 {
				if mp != "" {
					return fmt.Errorf("no dvfs mount runs at %s", mp)
				}
				return errors.New("no dvfs mount is running here")
			}
			var all []mountStatus
			for _, sock := range socks {
				st, err := queryStatus(cmd.Context(), sock, false)
				if err != nil {
					return err
				}
				if asJSON {
					all = append(all, st)
					continue
				}
				printStatus(st)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(all)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the mounts' status as JSON (a list, one object a mount)")
	return cmd
}

// queryStatus asks the mount listening on sock for its status; brief
// leaves out the cache fill of templates and clones.
func queryStatus(ctx context.Context, sock string, brief bool) (mountStatus, error) {
	var st mountStatus
	url := "http://mount/status"
	if brief {
		url += "?brief"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := statusClient(sock).Do(req)
	if err != nil {
		return st, fmt.Errorf("asking the mount (%s): %w", sock, err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// requestUnmount asks the mount listening on sock to unmount itself; it
// then syncs and exits.
func requestUnmount(ctx context.Context, sock string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://mount/unmount", nil)
	resp, err := statusClient(sock).Do(req)
	if err != nil {
		return fmt.Errorf("asking the mount to unmount (%s): %w", sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("the mount refused to unmount: %s", strings.TrimSpace(string(msg)))
	}
	return nil
}

// statusClient talks HTTP to the mount listening on sock.
func statusClient(sock string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func printStatus(st mountStatus) {
	fmt.Printf("%s (user %s)\n", st.Mountpoint, st.User)
	if st.Servers > 1 {
		fmt.Printf("  server: %s (1 of %d given; moved %d times after one could not be reached)\n", st.Server, st.Servers, st.Failovers)
	} else if st.Server != "" {
		fmt.Printf("  server: %s\n", st.Server)
	}
	fmt.Printf("  cache: %d blocks, %s; %d hits, %d misses, %d fetched, %d received by multicast, %d filled in the background, %d evicted\n", st.Cache.Blocks,
		humanize.IBytes(uint64(st.Cache.Bytes)), st.Cache.Hits, st.Cache.Misses, st.Cache.Fetched, st.Cache.Received, st.Cache.Filled, st.Cache.Evicted)
	if st.Cache.Uncached > 0 {
		fmt.Printf("  cache disk down to its reserve: %d template blocks read from the server without being cached\n", st.Cache.Uncached)
	}
	for _, t := range st.Templates {
		pct := 100.0
		if t.Blocks > 0 {
			pct = 100 * float64(t.Cached) / float64(t.Blocks)
		}
		fmt.Printf("  template %-24s %5.1f%% cached (%d of %d blocks)\n", t.Template, pct, t.Cached, t.Blocks)
	}
	for _, m := range st.Multicast {
		fmt.Printf("  multicast session %d: %s@%d %s, %d of %d blocks stored", m.Session, m.Template, m.Version, m.State, m.Stored, m.Needed)
		if m.Error != "" {
			fmt.Printf(" (%s)", m.Error)
		}
		fmt.Println()
	}
	if st.HiddenClones > 0 {
		fmt.Printf("  %d clones of user %s (not yours: run as root to see them)\n", st.HiddenClones, st.User)
	}
	for _, c := range st.Clones {
		sync := cloneSyncText(c.Status)
		pct := 100.0
		if c.Blocks > 0 {
			pct = 100 * float64(c.Cached) / float64(c.Blocks)
		}
		fmt.Printf("  clone %-27s %5.1f%% cached, generation %d, %s; lease: %s\n", c.Clone, pct, c.Generation, sync, c.Lease)
		if c.Conflict != "" {
			fmt.Printf("    taken over elsewhere; changes made here were saved as clone %s\n", c.Conflict)
		}
	}
}

// cloneSyncText says whether everything written to a clone here is on
// the server, and if not what is missing and why.
func cloneSyncText(c writeback.Status) string {
	if c.Synced {
		return "synced"
	}
	var parts []string
	if c.Pending {
		parts = append(parts, fmt.Sprintf("NOT SYNCED: %d blocks (%s) waiting to upload", c.PendingBlocks, humanize.IBytes(uint64(c.PendingBytes))))
	}
	if c.Unsealed {
		parts = append(parts, "NOT SYNCED: changes not sealed for upload yet")
	}
	if c.Stalled != "" {
		parts = append(parts, fmt.Sprintf("SYNC STALLED since %s: %s", c.StalledSince.Local().Format(time.TimeOnly), c.Stalled))
	}
	if len(parts) == 0 {
		parts = append(parts, "NOT SYNCED")
	}
	return strings.Join(parts, "; ")
}

// cloneStatuses adds to the writeback's report how much of each clone the
// cache holds.
func cloneStatuses(ctx context.Context, wb *writeback.Writeback, store interface {
	Missing(context.Context, []blockstore.ID) ([]blockstore.ID, error)
}, brief bool) []cloneStatus {
	var out []cloneStatus
	for _, st := range wb.Status(ctx) {
		cs := cloneStatus{Status: st}
		if brief {
			out = append(out, cs)
			continue
		}
		if m, err := wb.BaseManifest(ctx, st.Clone, nil); err == nil {
			ids := slices.Collect(m.BlockIDs())
			if missing, err := store.Missing(ctx, ids); err == nil {
				cs.Blocks, cs.Cached = len(ids), len(ids)-len(missing)
			}
		}
		out = append(out, cs)
	}
	return out
}

// templateFills reports how much of each template's latest version the
// cache holds.
func templateFills(ctx context.Context, catalog *cache.Catalog, store interface {
	Missing(context.Context, []blockstore.ID) ([]blockstore.ID, error)
}) []templateFill {
	list, err := catalog.Templates(ctx)
	if err != nil {
		return nil
	}
	var out []templateFill
	for _, t := range list {
		m, err := catalog.Template(ctx, t.Name, 0)
		if err != nil {
			continue
		}
		ids := slices.Collect(m.BlockIDs())
		missing, err := store.Missing(ctx, ids)
		if err != nil {
			continue
		}
		out = append(out, templateFill{Template: fmt.Sprintf("%s@%d", t.Name, m.Version), Blocks: len(ids), Cached: len(ids) - len(missing)})
	}
	return out
}
