package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// TestUnmountRequest: dvfs umount's request on the status socket (how it
// ends a WinFsp mount) reaches the mount's unmount, and the status stays
// answered meanwhile.
func TestUnmountRequest(t *testing.T) {
	disktest.SkipUnderWine(t, "Wine has no unix sockets (socket: winapi error #10047); Windows has them since 10 1803")
	mp := disktest.TempDir(t) + "/mnt"
	asked := make(chan struct{}, 1)
	stop, err := serveStatus(context.Background(), mp, slog.New(slog.DiscardHandler),
		func(context.Context, bool) mountStatus { return mountStatus{Mountpoint: mp, User: "alice"} },
		func() { asked <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := requestUnmount(ctx, statusSocket(mp)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked:
	default:
		t.Fatal("the request was answered, but the mount was not asked to unmount")
	}
	st, err := queryStatus(ctx, statusSocket(mp), true)
	if err != nil || st.User != "alice" {
		t.Fatalf("status after the request: %+v, %v", st, err)
	}
}

// TestMayUnmount: only root and the mounting user may unmount through
// the socket; where the system does not tell who called, the socket's
// place decides.
func TestMayUnmount(t *testing.T) {
	for _, tc := range []struct {
		p    peer
		want bool
	}{
		{peer{}, true},
		{peer{uid: 0, ok: true}, true},
		{peer{uid: 4242, ok: true}, false},
	} {
		ctx := context.WithValue(context.Background(), peerKey{}, tc.p)
		if _, ok := mayUnmount(ctx); ok != tc.want {
			t.Errorf("peer %+v: may unmount %v, want %v", tc.p, ok, tc.want)
		}
	}
	if err := requestUnmount(context.Background(), statusSocket(disktest.TempDir(t)+"/none")); err == nil || !strings.Contains(err.Error(), "asking the mount to unmount") {
		t.Errorf("request to no mount: %v", err)
	}
}
