package main

// dvfs doctor: what a workstation needs for a mount, checked one by one,
// each problem with what to do about it.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/multicast"
)

// Verdicts of a check.
const (
	verdictOK   = "ok"
	verdictWarn = "warn"
	verdictFail = "FAIL"
	verdictSkip = "skip"
)

// finding is one check's verdict: what was found and, for a problem,
// what to do.
type finding struct {
	Check   string `json:"check"`
	Verdict string `json:"verdict"`
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"`
}

type doctorConfig struct {
	cache   string
	minFree string
	mcIface string
	probe   time.Duration
	asJSON  bool
}

// The keys under which the mount keeps the server's pinned key (in the
// cache's meta store, per user): sync/cache's catalog.
const pinnedKeyKey = "cat/serverkey"

func newDoctorCmd(g *globals) *cobra.Command {
	var c doctorConfig
	cmd := &cobra.Command{
		Use:   "doctor [MOUNTPOINT]",
		Short: "Check what a workstation needs for dvfs mount, and say what to do about each problem",
		Long: `Doctor checks, one by one: the FUSE device, the cache's disk space against
its reserve, the server (reachable, the token accepted), the server's
signing key against the one this workstation pinned, the clock against the
server's, multicast reception from the server's group (a short probe), and
the lease state of the clones of the mount at MOUNTPOINT (or of every
mount running here). It reads the [mount] table of the config file for the
flags it shares with dvfs mount. It exits 1 when a check fails.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mp := ""
			if len(args) == 1 {
				mp = args[0]
			}
			fs := runDoctor(cmd.Context(), g, c, mp)
			if c.asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(fs); err != nil {
					return err
				}
			} else {
				printFindings(cmd.OutOrStdout(), fs)
			}
			for _, f := range fs {
				if f.Verdict == verdictFail {
					return errDoctorFailed
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.cache, "cache", "/var/cache/dvfs", "the workstation's cache directory, as dvfs mount --cache")
	f.StringVar(&c.minFree, "min-free", "256MiB", "the free space the mount keeps on the cache's disk, as dvfs mount --min-free")
	f.StringVar(&c.mcIface, "multicast-iface", "", "interface to receive multicast on, as dvfs mount --multicast-iface")
	f.DurationVar(&c.probe, "probe", 3*time.Second, "how long to listen to the server's multicast group")
	f.BoolVar(&c.asJSON, "json", false, "print the findings as JSON")
	return cmd
}

var errDoctorFailed = errors.New("doctor: some checks failed (see above)")

func printFindings(w io.Writer, fs []finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%-4s %-9s %s\n", f.Verdict, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(w, "     %-9s do: %s\n", "", f.Fix)
		}
	}
}

func runDoctor(ctx context.Context, g *globals, c doctorConfig, mountpoint string) []finding {
	out := []finding{checkFUSE(), checkCacheSpace(c)}
	cl, err := g.newClient()
	var who api.Principal
	if err == nil {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		who, err = cl.WhoAmI(qctx)
		cancel()
	}
	out = append(out, serverFinding(g, who, err))
	if err != nil {
		for _, check := range []string{"key", "clock", "multicast"} {
			out = append(out, finding{Check: check, Verdict: verdictSkip, Detail: "needs the server"})
		}
	} else {
		out = append(out, checkKey(ctx, g, cl, c.cache, who.Name))
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		skew, err := cl.ServerClock(qctx)
		cancel()
		out = append(out, clockFinding(skew, err))
		out = append(out, checkMulticast(ctx, cl, c))
	}
	return append(out, checkLeases(ctx, mountpoint)...)
}

// checkCacheSpace: the free space of the cache's disk against the
// reserve (--min-free) below which clone writes fail, and twice that,
// below which template blocks are no longer cached.
func checkCacheSpace(c doctorConfig) finding {
	f := finding{Check: "cache"}
	reserve, err := humanize.ParseBytes(c.minFree)
	if err != nil {
		f.Verdict, f.Detail = verdictFail, fmt.Sprintf("--min-free %q: %v", c.minFree, err)
		return f
	}
	dir, note := c.cache, ""
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		note = " (not made yet: the first mount makes it)"
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	free, err := diskFree(dir)
	if err != nil {
		f.Verdict, f.Detail = verdictFail, fmt.Sprintf("%s: %v", c.cache, err)
		return f
	}
	what := fmt.Sprintf("%s%s: %s free on its disk, reserve %s", c.cache, note, humanize.IBytes(free), humanize.IBytes(reserve))
	switch {
	case free < reserve:
		f.Verdict, f.Detail, f.Fix = verdictFail, what+": below the reserve, writes into clones fail with ENOSPC",
			"free space on that disk (clone data waits there until synced: check dvfs status), or give the cache a larger disk"
	case free < 2*reserve:
		f.Verdict, f.Detail, f.Fix = verdictWarn, what+": below twice the reserve, template blocks are read from the server without being cached",
			"free space on that disk, or lower --cache-size so eviction keeps room"
	default:
		f.Verdict, f.Detail = verdictOK, what
	}
	return f
}

// tokenExpiryWarning: a token that expires sooner is a warning.
const tokenExpiryWarning = 3 * 24 * time.Hour

func serverFinding(g *globals, who api.Principal, err error) finding {
	f := finding{Check: "server"}
	server := g.server
	if server == "" {
		server = os.Getenv(envServer)
	}
	var he *client.HTTPError
	switch {
	case err == nil && !who.Expires.IsZero() && time.Until(who.Expires) < tokenExpiryWarning:
		f.Verdict, f.Detail, f.Fix = verdictWarn, fmt.Sprintf("%s answers; the token is %s's (%s) and expires %s", server, who.Name, who.Role,
			who.Expires.Local().Format(time.DateTime)), "log in again (dvfs login), or get a new token from an admin (dvfs token create)"
	case err == nil:
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("%s answers; the token is %s's (%s)", server, who.Name, who.Role)
	case server == "":
		f.Verdict, f.Detail, f.Fix = verdictFail, err.Error(), "set DVFS_SERVER (or server in the config file's [mount])"
	case errors.As(err, &he) && (he.Status == 401 || he.Status == 403):
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("%s refuses the token: %v", server, err), "log in again (dvfs login), or get a new token from an admin (dvfs token create) and set DVFS_TOKEN"
	default:
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("%s: %v", server, err),
			"check the address, the network (ping, a firewall on the port) and that the server runs (systemctl status on the server)"
	}
	return f
}

// checkKey compares the server's signing key with the one the cache
// pinned for this user.
func checkKey(ctx context.Context, g *globals, cl *client.Client, cache, user string) finding {
	f := finding{Check: "key"}
	key, err := cl.PublicKey(ctx)
	if err != nil {
		f.Verdict, f.Detail = verdictFail, fmt.Sprintf("the server's key: %v", err)
		return f
	}
	id := manifest.KeyID(key)
	meta := filepath.Join(cache, "meta")
	if _, err := os.Stat(meta); err != nil {
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("the server signs with %s; nothing pinned yet (the first mount pins it)", id)
		return f
	}
	store, err := badgerstore.Open(meta, badgerstore.Config{Logger: g.log})
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			f.Verdict, f.Detail = verdictOK, fmt.Sprintf("the server signs with %s; a running mount holds the cache and refuses any other key", id)
			return f
		}
		f.Verdict, f.Detail, f.Fix = verdictWarn, fmt.Sprintf("cannot read the pinned key: %v", err), "run dvfs doctor as the mount's user or as root"
		return f
	}
	defer store.Close()
	pinned, err := blockstore.PrefixMeta(store, "u/"+user+"/").GetMeta(ctx, pinnedKeyKey)
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("the server signs with %s; nothing pinned for %s yet (the first mount pins it)", id, user)
	case err != nil:
		f.Verdict, f.Detail = verdictWarn, fmt.Sprintf("cannot read the pinned key: %v", err)
	case !ed25519.PublicKey(pinned).Equal(key):
		f.Verdict = verdictFail
		f.Detail = fmt.Sprintf("the server signs with %s, but this workstation pinned %s: the mount refuses it", id, manifest.KeyID(pinned))
		f.Fix = "if the server was rebuilt with a new key on purpose, move the cache aside (after dvfs status shows its clones synced) and mount again; otherwise another machine answers at that address: check DNS and the server's TLS certificate"
	default:
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("the server signs with %s, the key pinned here", id)
	}
	return f
}

// Clock skews past these are worth a warning and a failure: leases run
// 60 s and are renewed every 20 s, and TLS certificates check dates.
const (
	skewWarn = 5 * time.Second
	skewFail = 30 * time.Second
)

func clockFinding(skew time.Duration, err error) finding {
	f := finding{Check: "clock"}
	if err != nil {
		f.Verdict, f.Detail = verdictWarn, fmt.Sprintf("cannot read the server's clock: %v", err)
		return f
	}
	what := "this clock is within a second of the server's"
	if skew != 0 {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		what = fmt.Sprintf("this clock is %s %s the server's", skew.Abs().Round(time.Second), dir)
	}
	fix := "run NTP on the workstation and the server (systemd-timesyncd or chrony)"
	switch {
	case skew.Abs() > skewFail:
		f.Verdict, f.Detail, f.Fix = verdictFail, what+": lease times and TLS validity go wrong", fix
	case skew.Abs() > skewWarn:
		f.Verdict, f.Detail, f.Fix = verdictWarn, what, fix
	default:
		f.Verdict, f.Detail = verdictOK, what
	}
	return f
}

// checkMulticast joins the group of the server's sessions and listens for
// c.probe: a packet heard is reception; silence while a session sends is
// a network that drops multicast.
func checkMulticast(ctx context.Context, cl *client.Client, c doctorConfig) finding {
	f := finding{Check: "multicast"}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sessions, err := cl.MulticastSessions(qctx)
	cancel()
	if err != nil {
		f.Verdict, f.Detail = verdictWarn, fmt.Sprintf("the server's sessions: %v", err)
		return f
	}
	var groupName string
	sending := false
	for _, s := range sessions {
		groupName = s.Group
		sending = sending || s.State == "sending"
	}
	if groupName == "" {
		f.Verdict, f.Detail = verdictSkip, "the server lists no multicast session (none sent lately, or it runs without --multicast-group): nothing to listen to"
		return f
	}
	group, err := net.ResolveUDPAddr("udp4", groupName)
	if err != nil {
		f.Verdict, f.Detail = verdictFail, fmt.Sprintf("the server's group %q: %v", groupName, err)
		return f
	}
	ifi, _, err := interfaceIP(c.mcIface)
	if err != nil {
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("--multicast-iface: %v", err), "name an interface of this workstation (ip link)"
		return f
	}
	conn, err := multicast.ListenGroup(group, ifi)
	if err != nil {
		f.Verdict, f.Detail, f.Fix = verdictFail, fmt.Sprintf("cannot join %s: %v", groupName, err),
			"give the interface facing the server (--multicast-iface), and a route for 224.0.0.0/4 (the default route does on a lab LAN)"
		return f
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(c.probe))
	buf := make([]byte, 9000)
	heard := 0
	for {
		if _, _, _, err := conn.ReadFrom(buf); err != nil {
			break
		}
		heard++
	}
	switch {
	case heard > 0:
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("joined %s: %d packets in %s", groupName, heard, c.probe)
	case sending:
		f.Verdict, f.Detail = verdictFail, fmt.Sprintf("joined %s while the server sends a session, and heard nothing in %s", groupName, c.probe)
		f.Fix = "the network drops multicast here: on switches with IGMP snooping, enable an IGMP querier on the VLAN; check --multicast-iface and firewalls (UDP to the group's port); without multicast, missed versions fill by unicast (--fill-rate)"
	default:
		f.Verdict, f.Detail = verdictOK, fmt.Sprintf("joined %s; no session is sending now to listen to (dvfs template push sends one)", groupName)
	}
	return f
}

// checkLeases reports the lease state of the clones of the mount at
// mountpoint (or of every mount running here) from its status.
func checkLeases(ctx context.Context, mountpoint string) []finding {
	socks := statusSockets(mountpoint)
	if len(socks) == 0 {
		return []finding{{Check: "leases", Verdict: verdictSkip, Detail: "no dvfs mount runs here: leases are taken at a clone's first write"}}
	}
	var out []finding
	for _, sock := range socks {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := queryStatus(qctx, sock, true)
		cancel()
		if err != nil {
			out = append(out, finding{Check: "leases", Verdict: verdictFail, Detail: err.Error(),
				Fix: "the mount does not answer: if it was killed, unmount (fusermount3 -u MOUNTPOINT) and mount again; its unsynced changes sync then"})
			continue
		}
		if len(st.Clones) == 0 {
			detail := st.Mountpoint + ": no clone opened"
			if st.HiddenClones > 0 {
				detail = fmt.Sprintf("%s: %d clones of user %s (run as root or as that user to check them)", st.Mountpoint, st.HiddenClones, st.User)
			}
			out = append(out, finding{Check: "leases", Verdict: verdictOK, Detail: detail})
		}
		for _, c := range st.Clones {
			f := finding{Check: "leases", Verdict: verdictOK, Detail: fmt.Sprintf("%s clone %s: %s", st.Mountpoint, c.Clone, c.Lease)}
			switch {
			case c.Conflict != "":
				f.Verdict = verdictFail
				f.Detail = fmt.Sprintf("%s clone %s was taken over by another workstation; the changes made here were saved as clone %s", st.Mountpoint, c.Clone, c.Conflict)
				f.Fix = "open " + c.Conflict + " for what was written here, or reopen " + c.Clone + " (remount) to go on from the other workstation's"
			case strings.Contains(c.Lease, "leased to"):
				f.Verdict = verdictWarn
				f.Fix = "it is read-only here; close it on the other workstation, or take it over: dvfs clone takeover --cache CACHE " + c.Clone
			case c.Stalled != "":
				f.Verdict = verdictWarn
				f.Detail += "; syncs fail: " + c.Stalled
				f.Fix = "see the server check above and the mount's log"
			}
			out = append(out, f)
		}
	}
	return out
}

// statusSockets are the status sockets of the mount at mountpoint, or of
// every mount running here.
func statusSockets(mountpoint string) []string {
	if mountpoint != "" {
		mp, err := filepath.Abs(mountpoint)
		if err != nil {
			return nil
		}
		for _, sock := range []string{statusSocket(mp), filepath.Join("/run/dvfs", filepath.Base(statusSocket(mp)))} {
			if _, err := os.Stat(sock); err == nil {
				return []string{sock}
			}
		}
		return nil
	}
	socks, _ := filepath.Glob(filepath.Join(filepath.Dir(mountPIDFile("/")), "*.sock"))
	if os.Getuid() != 0 {
		sys, _ := filepath.Glob("/run/dvfs/*.sock")
		socks = append(socks, sys...)
	}
	return socks
}
