package etcdtest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Watchers returns how many watches the live members serve, from their
// metrics (etcd_debugging_mvcc_watcher_total). A member that does not
// answer counts none.
func (c *Cluster) Watchers() int {
	n := 0
	for _, m := range c.Members {
		select {
		case <-m.done:
			continue
		default:
		}
		n += m.watchers()
	}
	return n
}

// WaitWatchers waits until the members serve at least n watches: a
// watcher that lists before it watches (etcdmeta.WatchMeta) has listed.
// It fails the test after 60 s.
func (c *Cluster) WaitWatchers(n int) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for c.Watchers() < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("after 60 s the cluster serves %d watches, not %d", c.Watchers(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (m *Member) watchers() int {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + m.ClientAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_debugging_mvcc_watcher_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f)
		}
	}
	return 0
}
