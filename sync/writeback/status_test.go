package writeback

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// countingOverlay counts changes as fs.FS does.
type countingOverlay struct {
	fakeOverlay
	changes uint64
}

func (o *countingOverlay) Changes(string) uint64 { return o.changes }

// Status says synced only when nothing written here is off the server,
// shows a stall and why, and never invents a lease expiry.
func TestStatusHonest(t *testing.T) {
	ov := &countingOverlay{}
	w := &Writeback{cfg: Config{Overlay: ov, Store: memstore.New()}, log: slog.New(slog.DiscardHandler),
		outbox: &outbox{dir: disktest.TempDir(t)}, clones: map[string]*cloneWB{}}
	c := &cloneWB{w: w, name: "lab"}
	w.clones["lab"] = c
	status := func() Status { return w.Status(context.Background())[0] }
	for _, tc := range []struct {
		name      string
		set       func()
		synced    bool
		want, not string
	}{
		{"never written here", func() {}, true, "not taken", ""},
		{"written before a restart, not checked since", func() {
			c.st.Epoch = 3
			// Offline: the lease is kept from the state, with no expiry.
			c.lease = api.Lease{Holder: "me", Epoch: 3}
		}, false, "not renewed", "until"},
		{"a seal saw every change", func() { c.sealSaved(0) }, true, "", ""},
		{"written since", func() { ov.changes = 5 }, false, "", ""},
		{"sealed again", func() { c.sealSaved(5) }, true, "", ""},
		{"a sync failing", func() { c.stall, c.stallSince = errors.New("no space left on device"), time.Now() }, false, "", ""},
	} {
		tc.set()
		s := status()
		if s.Synced != tc.synced {
			t.Errorf("%s: Synced %v, want %v (%+v)", tc.name, s.Synced, tc.synced, s)
		}
		if tc.want != "" && !strings.Contains(s.Lease, tc.want) {
			t.Errorf("%s: lease %q, want it to say %q", tc.name, s.Lease, tc.want)
		}
		if tc.not != "" && strings.Contains(s.Lease, tc.not) {
			t.Errorf("%s: lease %q says %q", tc.name, s.Lease, tc.not)
		}
	}
	if s := status(); !strings.Contains(s.Stalled, "no space") || s.StalledSince.IsZero() {
		t.Errorf("a failing sync: Stalled %q since %v", s.Stalled, s.StalledSince)
	}
}
