package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// ServerSources are where a server's metrics come from, read at each
// scrape.
type ServerSources struct {
	Requests func() []server.RouteStats
	Repo     func() repo.Stats
	// Multicast is nil when the server sends no multicast.
	Multicast func() multicast.SessionsStats
	// Background counts the fetches served after readers'.
	Background func() server.BackgroundStats
}

// fetchRoute is the route that serves blocks by unicast.
const fetchRoute = "POST " + api.PathFetch

// Server returns the collector of a server's metrics (dvfs_server_*).
func Server(src ServerSources) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		e := newEmitter(ch, "server")
		if src.Requests != nil {
			bytes := map[string]int64{}
			for _, r := range src.Requests() {
				route := r.Route
				if route == "" {
					route = "unmatched"
				}
				e.counter("http_requests_total", "HTTP requests answered, by route and status code.", float64(r.Requests),
					"route", route, "code", strconv.Itoa(r.Code))
				bytes[route] += r.Bytes
			}
			for route, n := range bytes {
				e.counter("http_response_bytes_total", "HTTP response body bytes sent, by route.", float64(n), "route", route)
			}
			e.counter("unicast_bytes_total", "Block bytes (frames, as stored: compressed) served by unicast, over the fetch route.", float64(bytes[fetchRoute]))
		}
		if src.Repo != nil {
			st := src.Repo()
			for ev, n := range st.Leases {
				e.counter("lease_events_total", "Clone lease events: granted, renewed, taken_over, refused, released, fenced.", float64(n), "event", ev)
			}
			for k, n := range st.Commits {
				kind, outcome := splitPair(k)
				e.counter("commits_total", "Commits of template versions and clone generations, by outcome (ok, fenced, conflict, missing, error).", float64(n),
					"kind", kind, "outcome", outcome)
			}
		}
		if src.Background != nil {
			b := src.Background()
			e.counter("background_fetches_total", "Background fetches (cache fills nobody reads yet) answered, after readers' fetches.", float64(b.Fetches))
			e.counter("background_bytes_total", "Block bytes background fetches sent, at most --background-rate a second together.", float64(b.Bytes))
			e.counter("background_pauses_total", "Times a background fetch paused for readers' fetches.", float64(b.Pauses))
		}
		if src.Multicast != nil {
			collectSender(e, src.Multicast())
		}
	})
}

func collectSender(e emitter, st multicast.SessionsStats) {
	for _, state := range []string{"done", "failed"} {
		e.counter("multicast_sessions_total", "Multicast sessions ended, by outcome.", float64(st.Sessions[state]), "outcome", state)
	}
	for _, state := range []string{"queued", "sending"} {
		e.gauge("multicast_sessions", "Multicast sessions queued or sending now.", float64(st.Sessions[state]), "state", state)
	}
	if p := st.Sending; p != nil {
		sess, tpl := strconv.FormatUint(uint64(p.Session), 10), p.Template+"@"+strconv.FormatUint(p.Version, 10)
		e.gauge("multicast_session_blocks", "Blocks of the session sending now: the version's, and the distinct ones sent so far.", float64(p.Blocks),
			"session", sess, "template", tpl, "kind", "total")
		e.gauge("multicast_session_blocks", "", float64(p.Sent.Blocks), "session", sess, "template", tpl, "kind", "sent")
		e.gauge("multicast_session_repair_bytes", "Repair bytes the session sending now has sent so far.", float64(p.Sent.RepairBytes),
			"session", sess, "template", tpl)
		e.gauge("multicast_session_receivers", "Receivers of the session sending now, by state: joined, done, left.", float64(p.Sent.Receivers),
			"session", sess, "template", tpl, "state", "joined")
		e.gauge("multicast_session_receivers", "", float64(p.Sent.Done), "session", sess, "template", tpl, "state", "done")
		e.gauge("multicast_session_receivers", "", float64(p.Sent.Left), "session", sess, "template", tpl, "state", "left")
	}
	s := st.Sent
	e.counter("multicast_bytes_total", "UDP payload bytes sent by multicast (data, parity, control).", float64(s.Bytes))
	e.counter("multicast_packets_total", "Packets sent by multicast.", float64(s.Packets))
	e.counter("multicast_data_bytes_total", "Data packets' bytes sent by multicast: fresh (whole blocks, the first time), catchup (whole blocks again, for late joiners), repair (parity asked for by receivers that lost packets).",
		float64(s.FreshBytes-s.CatchUpBytes), "kind", "fresh")
	e.counter("multicast_data_bytes_total", "", float64(s.CatchUpBytes), "kind", "catchup")
	e.counter("multicast_data_bytes_total", "", float64(s.RepairBytes), "kind", "repair")
	e.counter("multicast_needed_bytes_total", "Bytes of the blocks some receiver lacked: what a lossless session sends once.", float64(s.NeededBytes))
	e.counter("multicast_blocks_total", "Distinct blocks sent by multicast.", float64(s.Blocks))
	e.counter("multicast_missed_blocks_total", "Blocks receivers asked for after they had gone by (late joiners).", float64(s.Missed))
	for _, r := range []struct {
		outcome string
		n       int
	}{{"joined", s.Receivers}, {"done", s.Done}, {"left", s.Left}, {"late", s.Late}} {
		e.counter("multicast_receivers_total", "Receivers of multicast sessions: joined, done, left (for unicast, or silent), late (joined after data went out).", float64(r.n), "outcome", r.outcome)
	}
}

// splitPair splits "a/b".
func splitPair(s string) (string, string) {
	for i := range len(s) {
		if s[i] == '/' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
