//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpGetMain is the test binary run as `GET URL` inside a network
// namespace (DVFS_E2E_HTTPGET=URL): it prints the status code, a newline
// and the body.
func httpGetMain(u string) {
	resp, err := http.Get(u)
	if err != nil {
		fmt.Println(0)
		fmt.Println(err)
		os.Exit(0)
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode)
	io.Copy(os.Stdout, resp.Body)
	os.Exit(0)
}

// httpGet GETs u from inside the namespace prefix enters, returning the
// status code and the body.
func httpGet(t *testing.T, prefix []string, u string) (int, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, prefix...), self)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "DVFS_E2E_HTTPGET="+u)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	code, body, _ := strings.Cut(string(out), "\n")
	n, _ := strconv.Atoi(code)
	return n, body
}

// promServer is a Prometheus server run by a test.
type promServer struct {
	t      *testing.T
	prefix []string
	url    string
	log    *syncBuffer
}

// startPrometheus runs Debian's prometheus in the namespace prefix enters,
// scraping each of targets (job name -> address) every second, with its
// storage in a temporary directory.
func startPrometheus(t *testing.T, prefix []string, listen string, targets map[string]string) *promServer {
	t.Helper()
	requireTool(t, "prometheus")
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n")
	for job, addr := range targets {
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n      - targets: ['%s']\n", job, addr)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, prefix...), "prometheus", "--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+listen)
	cmd := exec.Command(args[0], args[1:]...)
	p := &promServer{t: t, prefix: prefix, url: "http://" + listen, log: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if !p.log.waitFor(time.Minute, func(log string) bool { return strings.Contains(log, "Server is ready to receive web requests") }) {
		t.Fatalf("prometheus not ready after a minute:\n%s", p.log)
	}
	return p
}

// query returns the value of expr, which must give at most one sample;
// ok is false when it gives none.
func (p *promServer) query(expr string) (v float64, ok bool) {
	p.t.Helper()
	code, body := httpGet(p.t, p.prefix, p.url+"/api/v1/query?query="+url.QueryEscape(expr))
	if code != http.StatusOK {
		p.t.Fatalf("query %s: %d %s", expr, code, body)
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		p.t.Fatalf("query %s: %v %s", expr, err, body)
	}
	switch len(r.Data.Result) {
	case 0:
		return 0, false
	case 1:
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			p.t.Fatalf("query %s: value %q", expr, s)
		}
		return v, true
	}
	p.t.Fatalf("query %s: %d samples, want one (wrap it in sum)", expr, len(r.Data.Result))
	return 0, false
}

// waitValue waits (up to two minutes: the scrapes come every second)
// until expr's value satisfies ok, and returns it.
func (p *promServer) waitValue(expr, want string, ok func(float64) bool) float64 {
	p.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	var last float64
	var had bool
	for time.Now().Before(deadline) {
		if last, had = p.query(expr); had && ok(last) {
			return last
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.t.Fatalf("%s: want %s, last %v (present: %v)\nprometheus log:\n%s", expr, want, last, had, p.log)
	return 0
}

func (p *promServer) waitEqual(expr string, want float64) {
	p.t.Helper()
	p.waitValue(expr, fmt.Sprint("= ", want), func(v float64) bool { return v == want })
}

func (p *promServer) waitAtLeast(expr string, want float64) float64 {
	p.t.Helper()
	return p.waitValue(expr, fmt.Sprint(">= ", want), func(v float64) bool { return v >= want })
}

// A Prometheus server scrapes a dvfs server and a workstation's mount
// while a template is published (and sent by multicast), a clone is
// written and synced, and the template is read: the counters say what
// happened. Both answer /healthz and /readyz.
func TestPrometheusScrapesServerAndMount(t *testing.T) {
	// Most of its time is waiting (on an outage, restarts, scrapes): it
	// runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	prefix := netns(t)
	requireTool(t, "prometheus")
	// A fresh namespace: these ports are free.
	const serverMetrics, mountMetrics, promAddr = "127.0.0.1:19420", "127.0.0.1:19421", "127.0.0.1:19090"
	// A second workstation that takes no part in multicast: it reads by
	// unicast.
	const mount2Metrics = "127.0.0.1:19422"
	s := startServerIn(t, prefix, t.TempDir(), "127.0.0.1:0",
		"--multicast-group", "239.255.42.42:7421", "--multicast-iface", "lo", "--multicast-rate", "800mbit",
		"--multicast-receivers", "1", "--metrics-listen", serverMetrics)
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"),
		"--multicast-iface", "lo", "--sync-interval", "1s", "--metrics-listen", mountMetrics)
	m2 := s.startMount(t, filepath.Join(work, "cache2"), filepath.Join(work, "mnt2"),
		"--multicast=false", "--fill-rate", "0", "--metrics-listen", mount2Metrics)
	p := startPrometheus(t, prefix, promAddr, map[string]string{"server": serverMetrics, "mount": mountMetrics, "unicast": mount2Metrics})

	for _, addr := range []string{serverMetrics, mountMetrics} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := httpGet(t, prefix, "http://"+addr+path); code != http.StatusOK {
				t.Errorf("%s%s: %d %s", addr, path, code, body)
			}
		}
	}
	p.waitEqual(`up{job="server"}`, 1)
	p.waitEqual(`up{job="mount"}`, 1)

	// A publish: one template version committed, its blocks sent by
	// multicast and stored by the workstation, none fetched by unicast.
	const blocks = 256 // 16 MiB of 64 KiB blocks
	data := make([]byte, blocks<<16)
	rand.NewChaCha8([32]byte{'p'}).Read(data)
	vm := filepath.Join(work, "tpl")
	os.Mkdir(vm, 0o755)
	disk := filepath.Join(vm, "disk.vmdk")
	os.WriteFile(disk, data, 0o644)
	s.dvfs("template", "publish", "--name", "lab", vm)
	if got := waitSession(t, s, m, "lab@1"); got != blocks {
		t.Fatalf("the session stored %d blocks, want %d", got, blocks)
	}
	p.waitEqual(`dvfs_server_commits_total{kind="template",outcome="ok"}`, 1)
	p.waitEqual(`dvfs_server_multicast_sessions_total{outcome="done"}`, 1)
	p.waitEqual(`dvfs_server_multicast_blocks_total`, blocks)
	p.waitAtLeast(`dvfs_server_multicast_data_bytes_total{kind="fresh"}`, float64(len(data)))
	p.waitEqual(`dvfs_server_multicast_receivers_total{outcome="done"}`, 1)
	p.waitEqual(`dvfs_server_multicast_sessions{state="sending"}`, 0)
	if v, ok := p.query(`count(dvfs_server_multicast_session_blocks)`); ok {
		t.Errorf("a session's progress is still reported after it ended: %v series", v)
	}
	p.waitEqual(`dvfs_mount_multicast_sessions_total{job="mount",outcome="done"}`, 1)
	p.waitEqual(`dvfs_mount_multicast_blocks_total{job="mount",path="multicast"}`, blocks)
	p.waitAtLeast(`dvfs_mount_multicast_bytes_total{job="mount"}`, float64(len(data)))
	p.waitEqual(`dvfs_mount_cache_block_events_total{job="mount",event="received"}`, blocks)
	p.waitEqual(`sum(dvfs_server_http_requests_total{route="POST /v1/templates/{name}/versions",code=~"2.."})`, 1)

	// Reading the template through the mount: every block from the
	// cache, nothing by unicast.
	run(t, "cmp", filepath.Join(m.dir, "templates", "lab", "disk.vmdk"), disk)
	p.waitAtLeast(`dvfs_mount_cache_hits_total{job="mount"}`, 1)
	p.waitAtLeast(`dvfs_mount_read_bytes_total{job="mount"}`, float64(len(data)))
	p.waitEqual(`dvfs_mount_cache_misses_total{job="mount"}`, 0)
	p.waitEqual(`dvfs_mount_unicast_bytes_total{job="mount"}`, 0)
	p.waitAtLeast(`dvfs_fuse_op_duration_seconds_count{job="mount",op="read"}`, 1)

	// The second workstation reads it by unicast: every block a miss,
	// fetched from the server, which counts what it served.
	run(t, "cmp", filepath.Join(m2.dir, "templates", "lab", "disk.vmdk"), disk)
	p.waitEqual(`dvfs_mount_unicast_blocks_total{job="unicast"}`, blocks)
	fetched := p.waitAtLeast(`dvfs_mount_unicast_bytes_total{job="unicast"}`, 1)
	p.waitAtLeast(`dvfs_mount_cache_misses_total{job="unicast"}`, 1)
	p.waitEqual(`dvfs_mount_cache_block_events_total{job="unicast",event="fetched"}`, blocks)
	if v, ok := p.query(`sum(dvfs_mount_multicast_blocks_total{job="unicast"})`); ok {
		t.Errorf("a mount without --multicast reports multicast blocks: %v", v)
	}
	// The server's count includes the batches' framing.
	p.waitAtLeast(`dvfs_server_unicast_bytes_total`, fetched)
	p.waitAtLeast(`sum(dvfs_server_http_requests_total{route="POST /v1/blocks/fetch",code="200"})`, 1)

	// A sync: a clone written through the mount; its lease taken, its
	// generation committed and uploaded, the backlog empty afterwards.
	s.dvfs("clone", "create", "--template", "lab", "c1")
	change := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{'c'}).Read(change)
	if err := writeSync(filepath.Join(m.dir, "clones", "c1", "new.bin"), change); err != nil {
		t.Fatal(err)
	}
	waitGeneration(t, s, "c1", 2)
	p.waitEqual(`dvfs_server_lease_events_total{event="granted"}`, 1)
	p.waitAtLeast(`dvfs_server_commits_total{kind="generation",outcome="ok"}`, 1)
	p.waitAtLeast(`sum(dvfs_server_http_requests_total{route="POST /v1/clones/{name}/generations",code=~"2.."})`, 1)
	p.waitEqual(`dvfs_mount_lease_events_total{job="mount",event="acquired"}`, 1)
	p.waitAtLeast(`dvfs_mount_commits_total{job="mount"}`, 1)
	p.waitAtLeast(`dvfs_mount_uploaded_bytes_total{job="mount"}`, 1)
	p.waitEqual(`dvfs_mount_clone_synced{job="mount",clone="c1"}`, 1)
	p.waitEqual(`dvfs_mount_sync_backlog_bytes{job="mount"}`, 0)
	p.waitEqual(`dvfs_mount_sync_oldest_unsynced_seconds{job="mount"}`, 0)
	p.waitAtLeast(`dvfs_fuse_op_duration_seconds_count{job="mount",op="write"}`, 1)
	p.waitAtLeast(`dvfs_fuse_op_duration_seconds_count{job="mount",op="fsync"}`, 1)
	// Refusals are counted by route and status too.
	if out, err := s.try("template", "show", "nosuch"); err == nil {
		t.Fatalf("showing a template that does not exist worked:\n%s", out)
	}
	p.waitAtLeast(`sum(dvfs_server_http_requests_total{code="404"})`, 1)
	t.Logf("server metrics:\n%s", grepLines(httpGetBody(t, prefix, "http://"+serverMetrics+"/metrics"), "dvfs_server_"))
	t.Logf("mount metrics:\n%s", grepLines(httpGetBody(t, prefix, "http://"+mountMetrics+"/metrics"), "dvfs_mount_"))
}

func httpGetBody(t *testing.T, prefix []string, u string) string {
	_, body := httpGet(t, prefix, u)
	return body
}

// grepLines returns the lines of s that start with prefix.
func grepLines(s, prefix string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// --log-format json: every line the server logs is a JSON object, with
// the serving line's URL as a field.
func TestLogFormatJSON(t *testing.T) {
	cmd := exec.Command(dvfsBin, "serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		if line["level"] == nil || line["time"] == nil {
			t.Errorf("a line without level or time: %q", sc.Text())
		}
		if line["msg"] == "serving" {
			if u, _ := line["url"].(string); !strings.HasPrefix(u, "http://127.0.0.1:") {
				t.Errorf("serving line's url: %q", sc.Text())
			}
			return
		}
	}
	t.Fatal("the server ended before it served")
}
