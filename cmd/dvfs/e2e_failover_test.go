//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
)

// A commit whose answer is lost (the server took it, then the connection
// broke) is recognised on the retry, not saved as a conflict; and a mount
// given two servers goes on through the second when the first goes away,
// with everything fsynced on the server. The first "server" is a proxy in
// front of the real one, which drops the answer to the first commit and is
// then shut down: what a workstation sees of a server that dies.
func TestLostCommitAnswerAndFailover(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	tmpl := publishBase(t, s, "lab")
	target, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	rp := newProxy(t, target)
	var commits, dropped atomic.Int32
	dead := make(chan struct{}) // closed: the proxy dies, its requests with it
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-dead:
				cancel()
			case <-ctx.Done():
			}
		}()
		r = r.WithContext(ctx)
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/generations") && commits.Add(1) == 1 {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r) // the server commits...
			if rec.Code == http.StatusCreated {
				dropped.Add(1)
			}
			panic(http.ErrAbortHandler) // ...and its answer never arrives
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--server", front.URL+","+s.url, "--sync-interval", "300ms")
	path := filepath.Join(m.dir, "clones", "lab", "disk.vmdk")
	const records = 304 // the writer fsyncs every 8
	var kill sync.Once
	wait := runWriter(t, path, 0, records, 15*time.Millisecond, func(n int) {
		if n >= records/2 {
			kill.Do(func() {
				close(dead)
				front.Listener.Close()
				front.CloseClientConnections()
			})
		}
	})
	synced, touched := wait()
	select {
	case <-dead:
	default:
		t.Fatal("the writer finished before the proxy went away")
	}
	if synced != records-1 {
		t.Fatalf("the writer stopped at record %d of %d; mount log:\n%s", synced, records, m.log)
	}
	waitServerHas(t, s, "lab", tmpl, synced, touched, 2*time.Minute, m)
	if dropped.Load() != 1 {
		t.Fatalf("the first commit was not taken by the server (%d dropped answers); mount log:\n%s", dropped.Load(), m.log)
	}
	if !strings.Contains(m.log.String(), "found this workstation's last commit on the server") {
		t.Errorf("the commit whose answer was lost was not recognised; mount log:\n%s", m.log)
	}
	if out := s.dvfs("clone", "list"); strings.Contains(out, "conflict") {
		t.Errorf("a lost answer made a conflict clone:\n%s", out)
	}
	st := s.statusOf(t, m)
	if !strings.Contains(st, "server: "+s.url+" (1 of 2 given; moved 1 times") {
		t.Errorf("dvfs status does not say the mount moved to the second server:\n%s", st)
	}
	t.Logf("%d commits through the proxy, the first one's answer dropped; then the proxy went away at record %d of %d", commits.Load(), records/2, records)
	m.unmount()
}

// A server that answers an upload and then loses its blocks (killed
// before it stored them, its disk failing them) refuses the commit naming
// them with 409 and the list. The workstation sends them again and
// commits; it does not take the 409 for a takeover and save its changes
// as a conflict clone, whose commit would lack the same blocks (it then
// failed, and dvfs status said the changes were refused until the next
// round sent the blocks). Here a proxy answers the clone's first upload
// itself and drops its body.
func TestLostUploadSentAgain(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	publishSmall(t, s, "lab")
	target, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	rp := newProxy(t, target)
	var uploads, lost atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathUpload && uploads.Add(1) == 1 {
			io.Copy(io.Discard, r.Body)
			lost.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--server", front.URL, "--sync-interval", "300ms")
	want := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{'l'}).Read(want)
	path := filepath.Join(m.dir, "clones", "lab", "new.img")
	if err := writeAtSync(path, want, 0); err != nil {
		t.Fatal(err)
	}
	m.unmount()
	if lost.Load() != 1 {
		t.Fatalf("the proxy lost %d uploads, want 1", lost.Load())
	}
	if out := s.dvfs("clone", "list"); strings.Contains(out, "conflict") {
		t.Fatalf("lost blocks made a conflict clone:\n%s\nmount log:\n%s", out, m.log)
	}
	// Nor was one tried (it failed, lacking the same blocks, and the
	// mount's status said it was saving refused changes).
	if strings.Contains(m.log.String(), "-conflict-") {
		t.Fatalf("the mount took the 409 for a takeover:\n%s", m.log)
	}
	exp := filepath.Join(t.TempDir(), "lab")
	s.dvfs("clone", "export", "lab", exp)
	if got, err := os.ReadFile(filepath.Join(exp, "new.img")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the clone on the server: %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	t.Logf("%d uploads, the first lost; the commit lacking its blocks was answered by sending them again", uploads.Load())
}
