package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/sync/client"
)

// A client given several servers of one repository (here listeners of one
// server, which is what a workstation sees of servers over shared storage)
// moves to the next when the current one cannot be reached, sends reads
// again to the next when a server fails them half-way, and never sends a
// change again once a server took it (it may have been applied).
func TestClientFailover(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var seen [3]atomic.Int32
	counted := func(i int, h http.Handler) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen[i].Add(1)
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(s.Close)
		return s
	}
	first := counted(0, e.srv.Config.Handler)
	second := counted(1, e.srv.Config.Handler)
	// A server that takes every request and dies before answering it.
	dying := counted(2, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) }))

	c, err := client.New(client.Config{Server: first.URL + ", " + second.URL, Token: e.token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Server != first.URL || st.Failovers != 0 || seen[0].Load() != 1 {
		t.Fatalf("before: server %s, %d failovers, first saw %d", st.Server, st.Failovers, seen[0].Load())
	}
	first.Close() // refused from now on
	tok, err := c.CreateToken(ctx, "alice", "user")
	if err != nil {
		t.Fatalf("a change with the first server gone: %v", err)
	}
	if _, err := c.Templates(ctx); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Server != second.URL || st.Failovers != 1 || seen[1].Load() != 2 {
		t.Fatalf("after: server %s, %d failovers, second saw %d", st.Server, st.Failovers, seen[1].Load())
	}
	if got := c.Servers(); len(got) != 2 || got[0] != second.URL {
		t.Fatalf("Servers() = %v, want the second first", got)
	}

	// A read the current server fails half-way goes to the next; a change
	// does not.
	d, err := client.New(client.Config{Server: dying.URL + "," + second.URL, Token: tok.Token})
	if err != nil {
		t.Fatal(err)
	}
	before := seen[1].Load()
	if _, err := d.WhoAmI(ctx); err != nil {
		t.Fatalf("a read with the first server dying: %v", err)
	}
	if st := d.Stats(); st.Server != second.URL || st.Failovers != 1 || seen[2].Load() != 1 || seen[1].Load() != before+1 {
		t.Fatalf("read: server %s, %d failovers, the dying server saw %d, second %d more", st.Server, st.Failovers, seen[2].Load(), seen[1].Load()-before)
	}
	d, _ = client.New(client.Config{Server: dying.URL + "," + second.URL, Token: e.token})
	before = seen[1].Load()
	if _, err := d.CreateToken(ctx, "bob", "user"); err == nil {
		t.Fatal("a change the server died on reported success")
	}
	if seen[1].Load() != before {
		t.Fatal("a change a server took was sent again to the next")
	}
}
