// Package etcdtest runs a real etcd cluster for tests: three members of
// Debian's etcd (package etcd-server) on loopback, each with its own data
// directory, stopped and removed when the test ends. CI installs etcd
// (.ci/test); without it a test skips, except under CI, where it fails.
package etcdtest

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// Options are the cluster's settings; zero fields take etcd's defaults.
type Options struct {
	// Members is how many members to start; 0 means 3.
	Members int
	// MaxTxnOps is etcd's --max-txn-ops.
	MaxTxnOps int
	// MaxRequestBytes is etcd's --max-request-bytes.
	MaxRequestBytes int
}

// Cluster is a running etcd cluster.
type Cluster struct {
	// Members are the members, in the order started.
	Members []*Member
	t       testing.TB
}

// Member is one etcd process.
type Member struct {
	// Name is the member's name (m0, m1, ...).
	Name string
	// ClientAddr is host:port of the member's client API.
	ClientAddr string
	// Dir is the member's data directory.
	Dir string

	log  string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Endpoints returns the members' client addresses, for a client that
// balances over them all.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientAddr)
	}
	return eps
}

// Kill stops member m with SIGKILL, as a crash would, and waits for the
// process to be gone. Its data directory stays.
func (m *Member) Kill() {
	m.once.Do(func() {
		m.cmd.Process.Kill()
		<-m.done
	})
}

// Output returns what the member logged so far.
func (m *Member) Output() string {
	b, _ := os.ReadFile(m.log)
	return string(b)
}

// binary finds etcd on PATH or where Debian puts it.
func binary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if st, err := os.Stat("/usr/bin/etcd"); err == nil && !st.IsDir() {
		return "/usr/bin/etcd"
	}
	return ""
}

// Start runs a new cluster and stops every member (by its PID) when the
// test ends. It returns once every member answers /health.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if runtime.GOOS != "linux" {
		// Under Wine (.ci/wine) the Linux run covers these tests.
		disktest.SkipOffLinux(t, "etcd is started as a Linux program")
	}
	bin := binary()
	if bin == "" {
		const want = "etcd is missing (Debian package etcd-server)"
		if os.Getenv("CI") != "" {
			t.Fatal(want + ": CI installs it (.ci/test)")
		}
		t.Skip(want)
	}
	n := opts.Members
	if n == 0 {
		n = 3
	}
	c := &Cluster{t: t}
	var peers []string
	peerAddrs := make([]string, n)
	for i := range n {
		m := &Member{
			Name:       "m" + strconv.Itoa(i),
			ClientAddr: disktest.FreeAddr(t),
			Dir:        disktest.TempDir(t),
			done:       make(chan struct{}),
		}
		peerAddrs[i] = disktest.FreeAddr(t)
		peers = append(peers, m.Name+"=http://"+peerAddrs[i])
		c.Members = append(c.Members, m)
	}
	logDir := disktest.TempDir(t)
	for i, m := range c.Members {
		args := []string{
			"--name", m.Name,
			"--data-dir", filepath.Join(m.Dir, "data"),
			"--listen-client-urls", "http://" + m.ClientAddr,
			"--advertise-client-urls", "http://" + m.ClientAddr,
			"--listen-peer-urls", "http://" + peerAddrs[i],
			"--initial-advertise-peer-urls", "http://" + peerAddrs[i],
			"--initial-cluster", strings.Join(peers, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("dvfs-test-%d", os.Getpid()),
			"--logger", "zap", "--log-outputs", "stderr",
			// Slower than etcd's 100 ms / 1 s: on a loaded 2-core CI
			// machine a member starved of CPU must not cost the cluster
			// its leader (and a test its commits) for nothing.
			"--heartbeat-interval", "250", "--election-timeout", "2500",
		}
		if opts.MaxTxnOps > 0 {
			args = append(args, "--max-txn-ops", strconv.Itoa(opts.MaxTxnOps))
		}
		if opts.MaxRequestBytes > 0 {
			args = append(args, "--max-request-bytes", strconv.Itoa(opts.MaxRequestBytes))
		}
		m.log = filepath.Join(logDir, m.Name+".log")
		log, err := os.Create(m.log)
		if err != nil {
			t.Fatal(err)
		}
		m.cmd = exec.Command(bin, args...)
		// No ETCD_* variable of this machine reaches the members.
		m.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + m.Dir}
		m.cmd.Stdout, m.cmd.Stderr = log, log
		err = m.cmd.Start()
		log.Close()
		if err != nil {
			t.Fatal(err)
		}
		go func() { m.cmd.Wait(); close(m.done) }()
		t.Cleanup(func() { m.stop() })
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, m := range c.Members {
		for {
			err := m.health()
			if err == nil {
				break
			}
			select {
			case <-m.done:
				t.Fatalf("etcd %s exited:\n%s", m.Name, m.Output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("etcd %s not healthy on %s after 60s: %v\n%s", m.Name, m.ClientAddr, err, m.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// health asks the member's /health, which answers true once the cluster
// has a leader and the member serves.
func (m *Member) health() error {
	resp, err := http.Get("http://" + m.ClientAddr + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"true"`) {
		return fmt.Errorf("health: %s %s", resp.Status, b)
	}
	return nil
}

// stop ends the member with SIGTERM, and SIGKILL if it lingers.
func (m *Member) stop() {
	m.once.Do(func() {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	})
}
