package fs_test

import (
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
)

func TestOverlay(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("x"), 3*bs+1)
	if err := dirOf(t, fsys, root).Rename(ctx, "disk.vmdk", dirOf(t, fsys, root+"/logs"), "d.vmdk", 0); err != nil {
		t.Fatal(err)
	}
	create(t, fsys, root, "new", []byte("abc"))
	ents, err := fsys.Overlay(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	byPath := make(map[string]fs.OverlayEntry)
	for _, en := range ents {
		byPath[en.Path] = en
	}
	d, ok := byPath["logs/d.vmdk"]
	if !ok || d.BasePath != "disk.vmdk" || len(d.Local) != 1 || d.Local[0] != 1<<3 || d.Changes == 0 {
		t.Fatalf("logs/d.vmdk: %+v", d)
	}
	if _, err := os.Stat(fsys.DataPath("alice", d.Ino)); err != nil {
		t.Fatalf("data file of logs/d.vmdk: %v", err)
	}
	n := byPath["new"]
	if n.BasePath != "" || n.Size != 3 || n.Local[0] != 1 {
		t.Fatalf("new: %+v", n)
	}
	if en := byPath["current.vmdk"]; en.Target != "disk.vmdk" {
		t.Fatalf("symlink: %+v", en)
	}
	if _, ok := byPath["logs"]; !ok || len(ents) != 9 {
		t.Fatalf("%d entries: %+v", len(ents), ents)
	}
}
