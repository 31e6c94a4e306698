package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// WorkstationSources are where a mount's metrics come from, read at each
// scrape. A nil source is left out.
type WorkstationSources struct {
	Cache func() cache.Stats
	// ReadBytes is the bytes the filesystem read from template and clone
	// base blocks, through the cache (hits and misses alike).
	ReadBytes func() int64
	Client    func() client.Stats
	Joiner    func() multicast.JoinerStats
	Sessions  func() []multicast.JoinProgress
	Clones    func() []writeback.Status
	Writeback func() writeback.Stats
	// Now is the clock the backlog's age is measured with (time.Now).
	Now func() time.Time
}

// Workstation returns the collector of a mount's metrics (dvfs_mount_*).
func Workstation(src WorkstationSources) prometheus.Collector {
	if src.Now == nil {
		src.Now = time.Now
	}
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		e := newEmitter(ch, "mount")
		if src.Cache != nil {
			st := src.Cache()
			e.counter("cache_hits_total", "Block reads the cache answered.", float64(st.Hits))
			e.counter("cache_misses_total", "Block reads the cache did not hold (fetched from the server).", float64(st.Misses))
			for _, c := range []struct {
				how string
				n   int64
			}{{"fetched", st.Fetched}, {"received", st.Received}, {"filled", st.Filled}, {"uncached", st.Uncached}, {"evicted", st.Evicted}, {"corrupt", st.Corrupt}} {
				e.counter("cache_block_events_total", "Blocks the cache fetched on a miss, received (multicast), filled in the background (unicast), read uncached (disk at its reserve), evicted, found corrupt.",
					float64(c.n), "event", c.how)
			}
			e.gauge("cache_blocks", "Template blocks in the cache.", float64(st.Blocks))
			e.gauge("cache_bytes", "Bytes of template blocks in the cache.", float64(st.Bytes))
		}
		if src.ReadBytes != nil {
			e.counter("read_bytes_total", "Bytes the filesystem read from template and clone base blocks, through the cache.", float64(src.ReadBytes()))
		}
		if src.Client != nil {
			st := src.Client()
			e.counter("unicast_bytes_total", "Block bytes fetched from the server by unicast, as sent (frames).", float64(st.FetchedBytes))
			e.counter("unicast_blocks_total", "Blocks fetched from the server by unicast.", float64(st.FetchedBlocks))
			e.counter("server_requests_total", "Requests sent to the server.", float64(st.Requests))
			e.counter("server_unanswered_total", "Requests the server did not answer (unreachable, cut, timed out).", float64(st.Unanswered))
			e.counter("server_failovers_total", "Times the mount moved to the next of its servers (--server with several) after the current one could not be reached.", float64(st.Failovers))
			if !st.LastAnswer.IsZero() {
				e.gauge("server_last_answer_timestamp_seconds", "When the server last answered a request (Unix time).", float64(st.LastAnswer.UnixNano())/1e9)
			}
		}
		if src.Joiner != nil {
			collectReceiver(e, src.Joiner())
		}
		if src.Sessions != nil {
			for _, p := range src.Sessions() {
				if p.State != "receiving" {
					continue
				}
				sess, tpl := strconv.FormatUint(uint64(p.Session), 10), p.Template+"@"+strconv.FormatUint(p.Version, 10)
				e.gauge("multicast_session_blocks", "Blocks of a session being received: needed (lacking at its start) and stored so far.", float64(p.Needed),
					"session", sess, "template", tpl, "kind", "needed")
				e.gauge("multicast_session_blocks", "", float64(p.Stored), "session", sess, "template", tpl, "kind", "stored")
			}
		}
		if src.Clones != nil {
			now := src.Now()
			var bytes, blocks int64
			var oldest time.Time
			for _, c := range src.Clones() {
				bytes += c.PendingBytes
				blocks += int64(c.PendingBlocks)
				if !c.UnsyncedSince.IsZero() && (oldest.IsZero() || c.UnsyncedSince.Before(oldest)) {
					oldest = c.UnsyncedSince
				}
				synced, stalled := 0.0, 0.0
				if c.Synced {
					synced = 1
				}
				if c.Stalled != "" {
					stalled = 1
				}
				e.gauge("clone_synced", "1 when everything written to the clone here is on the server.", synced, "clone", c.Clone)
				e.gauge("clone_sync_stalled", "1 while the clone's syncs fail.", stalled, "clone", c.Clone)
			}
			age := 0.0
			if !oldest.IsZero() {
				age = max(now.Sub(oldest).Seconds(), 0)
			}
			e.gauge("sync_backlog_bytes", "Bytes sealed and waiting to upload, over the clones.", float64(bytes))
			e.gauge("sync_backlog_blocks", "Blocks sealed and waiting to upload, over the clones.", float64(blocks))
			e.gauge("sync_oldest_unsynced_seconds", "Age of the oldest change not on the server yet (0: none known).", age)
		}
		if src.Writeback != nil {
			st := src.Writeback()
			for ev, n := range st.Leases {
				e.counter("lease_events_total", "Clone lease events here: acquired, renewed, refused, offline (kept while the server was unreachable), lost (taken over).", float64(n), "event", ev)
			}
			e.counter("commits_total", "Clone generations committed from here.", float64(st.Commits))
			e.counter("uploaded_bytes_total", "Bytes uploaded for clone generations.", float64(st.UploadedBytes))
		}
	})
}

func collectReceiver(e emitter, st multicast.JoinerStats) {
	for _, state := range []string{"done", "failed"} {
		e.counter("multicast_sessions_total", "Multicast sessions joined and ended, by outcome.", float64(st.Sessions[state]), "outcome", state)
	}
	e.gauge("multicast_sessions_receiving", "Multicast sessions being received now.", float64(st.Sessions["receiving"]))
	r := st.Received
	e.counter("multicast_bytes_total", "Block bytes (frames) stored from multicast sessions.", float64(r.Bytes))
	e.counter("multicast_blocks_total", "Blocks of multicast sessions stored, by path: multicast, or unicast (what the session did not deliver).", float64(r.Multicast), "path", "multicast")
	e.counter("multicast_blocks_total", "", float64(r.Unicast), "path", "unicast")
	e.counter("multicast_packets_total", "Packets read from multicast sessions.", float64(r.Packets))
	e.counter("multicast_dropped_packets_total", "Multicast packets dropped: malformed, forged or foreign.", float64(r.Dropped))
	e.counter("multicast_repaired_blocks_total", "Blocks rebuilt from parity after packet loss.", float64(r.Repaired))
	e.counter("multicast_nacks_total", "Repair requests sent.", float64(r.Nacks))
	e.counter("multicast_corrupt_blocks_total", "Assembled blocks that failed verification.", float64(r.Corrupt))
}
