package fs_test

import (
	"context"
	iofs "io/fs"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// ttyRdev is Linux's makedev(4, 1), a tty's device number.
const ttyRdev = 4<<8 | 1

// TestLinksSpecialsOwnersSurviveRemount makes, through the core, what a
// VM folder beyond files holds: a second name of a base file, a FIFO, a
// socket, a device node, a file of another owner with set times, and
// removes one name of a base hard link; a remount finds all of it as it
// was, kept in the overlay's records and entries.
func TestLinksSpecialsOwnersSurviveRemount(t *testing.T) {
	w, err := fstest.POSIXWorld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{world: w, meta: memstore.New(), state: disktest.TempDir(t)}
	fsys := e.mount(t)
	root := "clones/" + fstest.POSIXName
	d := dirOf(t, fsys, root)
	disk := walk(t, fsys, root+"/disk.vmdk")
	if _, err := d.Link(ctx, disk, "disk2.vmdk"); err != nil {
		t.Fatal(err)
	}
	if err := dirOf(t, fsys, root+"/logs").Unlink(ctx, "disk.vmdk"); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]iofs.FileMode{"fifo": iofs.ModeNamedPipe | 0o600, "sock": iofs.ModeSocket | 0o755, "tty": iofs.ModeDevice | iofs.ModeCharDevice | 0o620} {
		if _, err := d.Mknod(ctx, name, mode, ttyRdev); err != nil {
			t.Fatalf("mknod %s: %v", name, err)
		}
	}
	_, h, err := d.Create(fs.WithCaller(ctx, fs.Owner{UID: 42, GID: 43}), "mine", 0o644, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Release(ctx)
	uid, gid := uint32(1000), uint32(100)
	at, mt := time.Unix(1<<33, 7), time.Unix(1<<31, 999999999)
	o := walk(t, fsys, root+"/owned.txt").(fs.Setter)
	if _, err := o.SetAttr(ctx, fs.SetAttr{UID: &uid, GID: &gid, ATime: &at, MTime: &mt}); err != nil {
		t.Fatal(err)
	}
	if err := o.(fs.Syncer).Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}

	fsys = e.mount(t)
	attr := func(p string) fs.Attr {
		t.Helper()
		a, err := walk(t, fsys, root+"/"+p).Attr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a1, a2 := attr("disk.vmdk"), attr("disk2.vmdk")
	if a1.Ino != a2.Ino || a1.Nlink != 2 || a2.Nlink != 2 {
		t.Errorf("disk.vmdk and disk2.vmdk: inodes %d and %d, links %d and %d; want one inode with 2 links", a1.Ino, a2.Ino, a1.Nlink, a2.Nlink)
	}
	if _, err := tryWalk(fsys, root+"/logs/disk.vmdk"); err == nil {
		t.Error("logs/disk.vmdk is back after the remount")
	}
	sameBytes(t, "disk2.vmdk", readAll(t, fsys, root+"/disk2.vmdk"), fstest.VMEntry(2, "disk.vmdk").Bytes())
	for name, typ := range map[string]iofs.FileMode{"fifo": iofs.ModeNamedPipe, "sock": iofs.ModeSocket, "tty": iofs.ModeDevice | iofs.ModeCharDevice} {
		a := attr(name)
		wantRdev := uint64(0)
		if typ&iofs.ModeDevice != 0 {
			wantRdev = ttyRdev
		}
		if a.Mode.Type() != typ || a.Rdev != wantRdev || a.Nlink != 1 {
			t.Errorf("%s: type %v rdev %#x links %d; want %v rdev %#x links 1", name, a.Mode.Type(), a.Rdev, a.Nlink, typ, wantRdev)
		}
	}
	if a := attr("mine"); a.UID != 42 || a.GID != 43 {
		t.Errorf("mine: owner %d:%d, want the caller 42:43", a.UID, a.GID)
	}
	if a := attr("owned.txt"); a.UID != uid || a.GID != gid || !a.ATime.Equal(at) || !a.MTime.Equal(mt) {
		t.Errorf("owned.txt: %d:%d atime %v mtime %v; want %d:%d %v %v", a.UID, a.GID, a.ATime, a.MTime, uid, gid, at, mt)
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestIDMap shows owners mapped between the workstation and the server:
// the stored 1234 shows as the local 1000, a chown to the local 1000
// stores 1234, and an ID outside the map is the same on both sides.
func TestIDMap(t *testing.T) {
	w, err := fstest.POSIXWorld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := fs.New(fs.Config{
		Blocks: w.Blocks, Catalog: w.Catalog, Meta: memstore.New(), StateDir: disktest.TempDir(t), FlushInterval: -1,
		Owner: fs.Owner{UID: 1000, GID: 1000},
		IDMap: fs.IDMap{UIDs: map[uint32]uint32{1000: 1234}, GIDs: map[uint32]uint32{1000: 5678}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close(ctx)
	for _, p := range []string{"templates/" + fstest.POSIXName + "/owned.txt", "clones/" + fstest.POSIXName + "/owned.txt"} {
		a, err := walk(t, fsys, p).Attr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if a.UID != 1000 || a.GID != 1000 {
			t.Errorf("%s: owner %d:%d, want the stored 1234:5678 shown as 1000:1000", p, a.UID, a.GID)
		}
	}
	root := "clones/" + fstest.POSIXName
	u, g := uint32(1000), uint32(7)
	if _, err := walk(t, fsys, root+"/disk.vmdk").(fs.Setter).SetAttr(ctx, fs.SetAttr{UID: &u, GID: &g}); err != nil {
		t.Fatal(err)
	}
	ents, err := fsys.Overlay(ctx, fstest.POSIXName)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Path == "disk.vmdk" && (e.Owner != fs.Owner{UID: 1234, GID: 7}) {
			t.Errorf("disk.vmdk kept as %d:%d, want 1234:7", e.Owner.UID, e.Owner.GID)
		}
	}
	if _, err := fs.New(fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: memstore.New(), StateDir: disktest.TempDir(t),
		IDMap: fs.IDMap{UIDs: map[uint32]uint32{1: 9, 2: 9}}}); err == nil {
		t.Error("an IDMap mapping two local IDs to one was taken")
	}
}
