package fs_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/fs"
)

// logRecords keeps the messages and attributes of what is logged.
type logRecords struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, s)
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if strings.Contains(r, substr) {
			n++
		}
	}
	return n
}

func TestWritableRefuses(t *testing.T) {
	var refuse atomic.Bool
	logs := &logRecords{}
	lease := errors.New("clone alice is leased to ws-b until 10:32; opened read-only")
	fsys := newEnv(t).mountWith(t, func(c *fs.Config) {
		c.Logger = slog.New(logs)
		c.Writable = func(name string) error {
			if refuse.Load() && name == "alice" {
				return lease
			}
			return nil
		}
	})
	d := dirOf(t, fsys, root)
	create(t, fsys, root, "victim", []byte("v"))
	h := openW(t, fsys, root+"/disk.vmdk") // opened while writable
	refuse.Store(true)
	size := int64(10)
	mode := os.FileMode(0o600)
	now := time.Now()
	changes := []struct {
		name string
		do   func() error
	}{
		{"open for writing", func() error { _, err := walk(t, fsys, root+"/winxp.vmx").(fs.File).Open(ctx, os.O_WRONLY); return err }},
		{"open with O_TRUNC", func() error {
			_, err := walk(t, fsys, root+"/winxp.vmx").(fs.File).Open(ctx, os.O_RDWR|os.O_TRUNC)
			return err
		}},
		{"create", func() error { _, _, err := d.Create(ctx, "new", 0o644, os.O_RDWR); return err }},
		{"create of an existing file", func() error { _, _, err := d.Create(ctx, "victim", 0o644, os.O_RDONLY); return err }},
		{"mkdir", func() error { _, err := d.Mkdir(ctx, "dir", 0o755); return err }},
		{"symlink", func() error { _, err := d.Symlink(ctx, "x", "link"); return err }},
		{"rename", func() error { return d.Rename(ctx, "victim", d, "renamed", 0) }},
		{"unlink", func() error { return d.Unlink(ctx, "victim") }},
		{"rmdir", func() error { return d.Rmdir(ctx, "logs") }},
		{"truncate", func() error {
			_, err := walk(t, fsys, root+"/winxp.vmx").(fs.Setter).SetAttr(ctx, fs.SetAttr{Size: &size})
			return err
		}},
		{"chmod", func() error {
			_, err := walk(t, fsys, root+"/winxp.vmx").(fs.Setter).SetAttr(ctx, fs.SetAttr{Mode: &mode})
			return err
		}},
		{"utimes", func() error {
			_, err := walk(t, fsys, root).(fs.Setter).SetAttr(ctx, fs.SetAttr{MTime: &now})
			return err
		}},
		{"write", func() error { _, err := h.WriteAt(ctx, []byte("x"), 0); return err }},
		{"fallocate", func() error { return h.Allocate(ctx, 0, 10*bs, 0) }},
		{"punch", func() error { return h.Allocate(ctx, 0, bs, fs.AllocPunchHole|fs.AllocKeepSize) }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			err := c.do()
			isErr(t, c.name, err, fs.ErrReadOnly)
			if !strings.Contains(err.Error(), "leased to ws-b") {
				t.Fatalf("error %q does not say why", err)
			}
		})
	}
	reads := []struct {
		name string
		do   func() error
	}{
		{"open read-only and read", func() error {
			h, err := walk(t, fsys, root+"/winxp.vmx").(fs.File).Open(ctx, os.O_RDONLY)
			if err != nil {
				return err
			}
			defer h.Release(ctx)
			_, err = h.ReadAt(ctx, make([]byte, 10), 0)
			return err
		}},
		{"read an open handle", func() error { _, err := h.ReadAt(ctx, make([]byte, 10), 0); return err }},
		{"lookup and readdir", func() error { _, err := d.ReadDir(ctx); return err }},
		{"readlink", func() error { _, err := walk(t, fsys, root+"/current.vmdk").(fs.Symlink).Readlink(ctx); return err }},
		{"fsync", func() error { return h.Sync(ctx, false) }},
		{"overlay", func() error { _, err := fsys.Overlay(ctx, "alice"); return err }},
	}
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			if err := r.do(); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
		})
	}
	if n := logs.count("leased to ws-b"); n != 1 {
		t.Fatalf("the refusal was logged %d times, want once a minute", n)
	}
	if n := logs.count("WARN"); n != 1 {
		t.Fatalf("%d warnings", n)
	}
	refuse.Store(false)
	if _, err := d.Mkdir(ctx, "dir", 0o755); err != nil {
		t.Fatalf("mkdir once writable again: %v", err)
	}
}

func TestOnSync(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	fsys := newEnv(t).mountWith(t, func(c *fs.Config) {
		c.OnSync = func(name string) {
			mu.Lock()
			synced = append(synced, name)
			mu.Unlock()
		}
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range synced {
			if s != "alice" {
				t.Fatalf("OnSync(%q)", s)
			}
		}
		return len(synced)
	}
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("x"), 0)
	steps := []struct {
		name string
		do   func() error
		want int
	}{
		{"write", func() error { writeAt(t, h, []byte("y"), 1); return nil }, 0},
		{"fsync", func() error { return h.Sync(ctx, false) }, 1},
		{"fdatasync with nothing to sync", func() error { return h.Sync(ctx, true) }, 2},
		{"fsync of a directory", func() error { return walk(t, fsys, root+"/logs").(fs.Syncer).Sync(ctx) }, 3},
		{"periodic flush", func() error { return fsys.Flush(ctx) }, 3},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n := count(); n != s.want {
			t.Fatalf("after %s: OnSync called %d times, want %d", s.name, n, s.want)
		}
	}
}
