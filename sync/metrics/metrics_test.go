package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady error = errors.New("not mounted")
	h := New("v1").Handler(func() error { return notReady })
	if code, _ := get(t, h, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not mounted") {
		t.Errorf("/readyz when not ready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get(t, h, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz when ready: %d", code)
	}
}

// The collectors turn the parts' Stats into metrics, one series per
// label set, in an exposition Prometheus accepts (a metric sent with
// several label sets keeps one help text). The multicast counters are
// here as the senders' and receivers' Stats give them, loss and repair
// included; the e2e test (TestPrometheusScrapesServerAndMount) runs a
// lossless session on loopback.
func TestCollectors(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reg := New("v1.2.3")
	reg.Register(Server(ServerSources{
		Requests: func() []server.RouteStats {
			return []server.RouteStats{
				{Route: fetchRoute, Code: 200, Requests: 3, Bytes: 1000},
				{Route: fetchRoute, Code: 404, Requests: 1, Bytes: 20},
				{Route: "", Code: 404, Requests: 2, Bytes: 40},
			}
		},
		Repo: func() repo.Stats {
			return repo.Stats{Leases: map[string]int64{"granted": 2, "taken_over": 1}, Commits: map[string]int64{"template/ok": 4, "generation/fenced": 1}}
		},
		Background: func() server.BackgroundStats { return server.BackgroundStats{Fetches: 5, Bytes: 4096, Pauses: 3} },
		Multicast: func() multicast.SessionsStats {
			return multicast.SessionsStats{Sessions: map[string]int{"done": 2, "failed": 1, "sending": 1},
				Sent: multicast.SenderStats{Bytes: 5000, FreshBytes: 3000, CatchUpBytes: 500, RepairBytes: 700, Receivers: 8, Done: 7, Left: 1, Late: 2, Blocks: 40},
				Sending: &multicast.SendingProgress{Session: 9, Template: "lab", Version: 3, Blocks: 100,
					Sent: multicast.SenderStats{Blocks: 25, RepairBytes: 64, Receivers: 4, Done: 1}}}
		},
	}))
	reg.EnableFUSE()
	reg.ObserveFUSE("read", 50*time.Microsecond)
	reg.ObserveFUSE("read", 3*time.Millisecond)
	reg.Register(Workstation(WorkstationSources{
		Cache: func() cache.Stats {
			return cache.Stats{Hits: 10, Misses: 2, Fetched: 2, Received: 30, Blocks: 32, Bytes: 32 << 16}
		},
		ReadBytes: func() int64 { return 12 << 16 },
		Client:    func() client.Stats { return client.Stats{FetchedBlocks: 2, FetchedBytes: 100000, LastAnswer: now} },
		Joiner: func() multicast.JoinerStats {
			return multicast.JoinerStats{Sessions: map[string]int{"done": 1, "receiving": 1},
				Received: multicast.ReceiverStats{Multicast: 30, Unicast: 2, Bytes: 30 << 16, Repaired: 3, Nacks: 4}}
		},
		Sessions: func() []multicast.JoinProgress {
			return []multicast.JoinProgress{{Session: 7, Template: "lab", Version: 2, Stored: 5, Needed: 9, State: "receiving"}, {Session: 6, State: "done"}}
		},
		Clones: func() []writeback.Status {
			return []writeback.Status{
				{Clone: "a", Synced: true},
				{Clone: "b", Pending: true, PendingBlocks: 3, PendingBytes: 3 << 16, Unsealed: true, UnsyncedSince: now.Add(-90 * time.Second)},
				{Clone: "c", Unsealed: true, Stalled: "server unreachable", UnsyncedSince: now.Add(-30 * time.Second)},
			}
		},
		Writeback: func() writeback.Stats {
			return writeback.Stats{Leases: map[string]int64{"acquired": 2, "lost": 1}, Commits: 5, UploadedBytes: 777}
		},
		Now: func() time.Time { return now },
	}))
	code, body := get(t, reg.Handler(func() error { return nil }), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`dvfs_build_info{version="v1.2.3"} 1`,
		`dvfs_server_http_requests_total{code="200",route="POST /v1/blocks/fetch"} 3`,
		`dvfs_server_http_requests_total{code="404",route="unmatched"} 2`,
		`dvfs_server_http_response_bytes_total{route="POST /v1/blocks/fetch"} 1020`,
		`dvfs_server_unicast_bytes_total 1020`,
		`dvfs_server_background_fetches_total 5`,
		`dvfs_server_background_bytes_total 4096`,
		`dvfs_server_background_pauses_total 3`,
		`dvfs_server_lease_events_total{event="taken_over"} 1`,
		`dvfs_server_commits_total{kind="generation",outcome="fenced"} 1`,
		`dvfs_server_commits_total{kind="template",outcome="ok"} 4`,
		`dvfs_server_multicast_sessions_total{outcome="failed"} 1`,
		`dvfs_server_multicast_sessions{state="sending"} 1`,
		`dvfs_server_multicast_data_bytes_total{kind="fresh"} 2500`,
		`dvfs_server_multicast_data_bytes_total{kind="catchup"} 500`,
		`dvfs_server_multicast_data_bytes_total{kind="repair"} 700`,
		`dvfs_server_multicast_receivers_total{outcome="late"} 2`,
		`dvfs_server_multicast_session_blocks{kind="total",session="9",template="lab@3"} 100`,
		`dvfs_server_multicast_session_blocks{kind="sent",session="9",template="lab@3"} 25`,
		`dvfs_server_multicast_session_repair_bytes{session="9",template="lab@3"} 64`,
		`dvfs_server_multicast_session_receivers{session="9",state="done",template="lab@3"} 1`,
		`dvfs_fuse_op_duration_seconds_count{op="read"} 2`,
		`dvfs_fuse_op_duration_seconds_bucket{op="read",le="0.00016"} 1`,
		`dvfs_mount_cache_hits_total 10`,
		`dvfs_mount_cache_block_events_total{event="received"} 30`,
		`dvfs_mount_read_bytes_total 786432`,
		`dvfs_mount_unicast_bytes_total 100000`,
		`dvfs_mount_multicast_blocks_total{path="unicast"} 2`,
		`dvfs_mount_multicast_repaired_blocks_total 3`,
		`dvfs_mount_multicast_nacks_total 4`,
		`dvfs_mount_multicast_sessions_receiving 1`,
		`dvfs_mount_multicast_session_blocks{kind="stored",session="7",template="lab@2"} 5`,
		`dvfs_mount_sync_backlog_bytes 196608`,
		`dvfs_mount_sync_backlog_blocks 3`,
		`dvfs_mount_sync_oldest_unsynced_seconds 90`,
		`dvfs_mount_clone_synced{clone="a"} 1`,
		`dvfs_mount_clone_synced{clone="b"} 0`,
		`dvfs_mount_clone_sync_stalled{clone="c"} 1`,
		`dvfs_mount_lease_events_total{event="lost"} 1`,
		`dvfs_mount_commits_total 5`,
		`dvfs_mount_server_last_answer_timestamp_seconds 1.767323045e+09`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("no %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
