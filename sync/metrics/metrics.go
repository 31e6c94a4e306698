// Package metrics is dvfs's Prometheus engine: the one package that
// imports client_golang. Its collectors read the Stats of the server's and
// the workstation's parts when Prometheus scrapes, so those parts keep
// plain counters and know nothing of Prometheus; the FUSE latency
// histograms are the one thing observed as it happens (ObserveFUSE). It
// also serves /metrics, /healthz and /readyz.
package metrics

import (
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of dvfs.
const Namespace = "dvfs"

// Registry holds a process's metrics.
type Registry struct {
	reg  *prometheus.Registry
	fuse *prometheus.HistogramVec
}

// New returns a registry with the Go runtime's and the process's
// collectors and dvfs_build_info{version} = 1.
func New(version string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info", Help: "The dvfs build running (always 1).",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	reg.MustRegister(info)
	return &Registry{reg: reg}
}

// Register adds a collector (Server, Workstation).
func (r *Registry) Register(c prometheus.Collector) { r.reg.MustRegister(c) }

// FUSEBuckets are the latency histograms' bounds: 10 µs (a cached getattr)
// to 2.6 s (a miss behind a slow link), by factors of 4.
var FUSEBuckets = prometheus.ExponentialBuckets(10e-6, 4, 10)

// ObserveFUSE records how long a FUSE request of op took; the mount's
// adapter calls it for every request. Without EnableFUSE it does nothing.
func (r *Registry) ObserveFUSE(op string, d time.Duration) {
	if r.fuse != nil {
		r.fuse.WithLabelValues(op).Observe(d.Seconds())
	}
}

// EnableFUSE registers the FUSE latency histograms
// (dvfs_fuse_op_duration_seconds{op}); call it before the mount serves.
func (r *Registry) EnableFUSE() {
	r.fuse = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "fuse", Name: "op_duration_seconds",
		Help:    "Time the mount took to answer a FUSE request, by operation.",
		Buckets: FUSEBuckets,
	}, []string{"op"})
	r.reg.MustRegister(r.fuse)
}

// Handler serves /metrics, /healthz (200 while the process runs) and
// /readyz (200 when ready returns nil, else 503 with its error).
func (r *Registry) Handler(ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// emitter sends const metrics to a scrape. A metric sent again with
// other labels may leave its help empty: it keeps the first one's (a
// scrape refuses two helps for one name).
type emitter struct {
	ch     chan<- prometheus.Metric
	prefix string            // namespace_subsystem_
	helps  map[string]string // by name
}

func newEmitter(ch chan<- prometheus.Metric, subsystem string) emitter {
	return emitter{ch: ch, prefix: Namespace + "_" + subsystem + "_", helps: make(map[string]string)}
}

func (e emitter) emit(kind prometheus.ValueType, name, help string, v float64, labels ...string) {
	if help == "" {
		help = e.helps[name]
	} else {
		e.helps[name] = help
	}
	var names, values []string
	for i := 0; i+1 < len(labels); i += 2 {
		names, values = append(names, labels[i]), append(values, labels[i+1])
	}
	d := prometheus.NewDesc(e.prefix+name, help, names, nil)
	e.ch <- prometheus.MustNewConstMetric(d, kind, v, values...)
}

func (e emitter) counter(name, help string, v float64, labels ...string) {
	e.emit(prometheus.CounterValue, name, help, v, labels...)
}

func (e emitter) gauge(name, help string, v float64, labels ...string) {
	e.emit(prometheus.GaugeValue, name, help, v, labels...)
}

// collectorFunc is an unchecked collector: its metrics vary with what
// the sources hold (routes seen, clones known), so it describes none.
type collectorFunc func(ch chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }
