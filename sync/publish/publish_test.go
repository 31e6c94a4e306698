//go:build linux

package publish

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/export"
)

// memServer is a publish target in memory: it checks every uploaded frame
// as the real server does, and keeps the committed manifest.
type memServer struct {
	store *memstore.Store
	mu    sync.Mutex
	m     *manifest.Manifest
	// fetched counts the blocks Fetch handed out.
	fetched int
}

func (s *memServer) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	return s.store.Missing(ctx, ids)
}

func (s *memServer) UploadParts(ctx context.Context, parts [][]byte) error {
	return api.ParseBatch(bytes.Join(parts, nil), func(id blockstore.ID, frame []byte) error {
		if err := blockstore.Verify(id, frame); err != nil {
			return err
		}
		return s.store.Put(ctx, blockstore.Block{ID: id, Frame: bytes.Clone(frame)})
	})
}

// Fetch hands fn each block's plain bytes, as client.Client.Fetch does, so
// an export can read back what was published; fetched counts the blocks
// asked for.
func (s *memServer) Fetch(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, plain []byte) error) error {
	var buf []byte
	for _, id := range ids {
		var err error
		if buf, err = s.store.Get(ctx, id, buf[:0]); err != nil {
			return err
		}
		s.mu.Lock()
		s.fetched++
		s.mu.Unlock()
		if err := fn(id, buf); err != nil {
			return err
		}
	}
	return nil
}

func (s *memServer) Commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	return api.VersionInfo{Name: m.Name, Version: 1}, nil
}

// TestPublishReadsEveryByte publishes files of awkward sizes (empty, under
// a sector, a sector and a bit, whole blocks, a partial last block, holes)
// from a disk directory (read with O_DIRECT) and, when there is one, from
// tmpfs, and rebuilds each file from the manifest and the uploaded blocks;
// with Deferred, every uploaded frame is a deferred one, and otherwise none
// is.
func TestPublishReadsEveryByte(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		t.Run(fmt.Sprintf("deferred=%v", deferred), func(t *testing.T) { testPublishReadsEveryByte(t, deferred) })
	}
}

func testPublishReadsEveryByte(t *testing.T, deferred bool) {
	dirs := map[string]string{"disk": t.TempDir()}
	if shm, err := os.MkdirTemp("/dev/shm", "dvfs-publish"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		dirs["tmpfs"] = shm
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			bs := blockstore.DefaultBlockSize
			files := map[string][]byte{}
			for i, size := range []int{0, 1, 4095, 4097, bs, 3*bs + 123, 40*bs + 4096} {
				data := make([]byte, size)
				for k := range data {
					data[k] = byte(r.Uint32())
				}
				files[filepath.Join("d", string(rune('a'+i)))] = data
			}
			// A sparse file: data, a hole of 5 blocks, data ending mid-block.
			sparse := make([]byte, 9*bs+777)
			for k := range sparse[:bs+10] {
				sparse[k] = byte(r.Uint32())
			}
			for k := 7 * bs; k < len(sparse); k++ {
				sparse[k] = byte(r.Uint32())
			}
			files["sparse"] = sparse
			os.MkdirAll(filepath.Join(dir, "d"), 0o755)
			for p, data := range files {
				if p == "sparse" {
					f, err := os.Create(filepath.Join(dir, p))
					if err != nil {
						t.Fatal(err)
					}
					f.WriteAt(sparse[:bs+10], 0)
					f.WriteAt(sparse[7*bs:], 7*int64(bs))
					f.Close()
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			srv := &memServer{store: memstore.New()}
			res, err := Publish(t.Context(), Config{Server: srv, Name: "awkward", Dir: dir, Deferred: deferred})
			if err != nil {
				t.Fatal(err)
			}
			if res.HoleBlocks < 5 {
				t.Errorf("%d hole blocks; want at least the sparse file's 5", res.HoleBlocks)
			}
			for p, want := range files {
				f, ok := srv.m.Lookup(filepath.ToSlash(p))
				if !ok {
					t.Fatalf("%s not in the manifest", p)
				}
				var got []byte
				for _, id := range f.Blocks {
					if id.IsHole() {
						got = append(got, make([]byte, min(bs, int(f.Size)-len(got)))...)
						continue
					}
					if got, err = srv.store.Get(t.Context(), id, got); err != nil {
						t.Fatalf("%s: %v", p, err)
					}
					frame, err := srv.store.GetFrame(t.Context(), id, nil)
					if err != nil || blockstore.Deferred(frame) != deferred {
						t.Fatalf("%s: uploaded frame deferred %v, want %v (%v)", p, blockstore.Deferred(frame), deferred, err)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: rebuilt %d bytes, want %d, equal %v", p, len(got), len(want), bytes.Equal(got, want))
				}
			}
		})
	}
}

// TestPublishExportKeepsEverything publishes, as root, a tree holding what
// a VM folder may: a sparse file, a file with two names (one in a
// subdirectory), a FIFO with two names, a socket node, char and block device
// nodes, a symlink, entries of another owner and group, setuid, setgid and
// sticky modes, and atimes and mtimes with nanoseconds, before 1970 and
// after 2038. It checks the manifest (hard links as Link entries, read and
// sent once), passes it through its binary form as a server would, exports
// it, and compares the lstat of every exported entry, and the contents,
// with the original's.
func TestPublishExportKeepsEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for chown and mknod")
	}
	bs := blockstore.DefaultBlockSize
	src := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	at := func(p string) string { return filepath.Join(src, filepath.FromSlash(p)) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	must(os.MkdirAll(at("vm/sub"), 0o755))
	must(os.Mkdir(at("shared"), 0o755))
	// A sparse disk: a block of data, nine blocks of hole, a short last
	// block of data.
	disk, err := os.Create(at("vm/disk.img"))
	must(err)
	_, err = disk.WriteAt(random(bs), 0)
	must(err)
	_, err = disk.WriteAt(random(1000), 10*int64(bs))
	must(err)
	must(disk.Close())
	nvram := random(3*bs + 77)
	must(os.WriteFile(at("vm/nvram"), nvram, 0o644))
	must(os.Link(at("vm/nvram"), at("vm/sub/nvram.link")))
	must(os.WriteFile(at("vm/empty"), nil, 0o600))
	must(unix.Mkfifo(at("fifo"), 0o644))
	must(os.Link(at("fifo"), at("fifo.2")))
	must(unix.Mknod(at("sock"), unix.S_IFSOCK|0o755, 0))
	must(unix.Mknod(at("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(at("loop"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))
	must(os.Symlink("vm/disk.img", at("disk.lnk")))
	// Owners, then modes: chown clears setuid and setgid.
	for _, p := range []string{"vm", "vm/sub", "vm/disk.img", "vm/nvram", "fifo", "sock", "disk.lnk"} {
		must(os.Lchown(at(p), 1234, 5678))
	}
	must(os.Lchown(at("null"), 0, 5678))
	must(os.Chmod(at("vm"), 0o775|fs.ModeSetgid))
	must(os.Chmod(at("vm/nvram"), 0o755|fs.ModeSetuid))
	must(os.Chmod(at("vm/disk.img"), 0o750|fs.ModeSetgid))
	must(os.Chmod(at("shared"), 0o777|fs.ModeSticky))
	must(os.Chmod(at("null"), 0o666)) // mknod took the umask off
	// Times, each its own, to the nanosecond; directories' after what
	// they hold.
	var paths []string
	must(filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != src {
			rel, _ := filepath.Rel(src, path)
			paths = append(paths, filepath.ToSlash(rel))
		}
		return err
	}))
	slices.Sort(paths)
	y2100 := time.Date(2100, 1, 1, 0, 0, 0, 123456789, time.UTC)
	before1970 := time.Date(1969, 7, 20, 20, 17, 40, 5e8, time.UTC)
	special := map[string][2]time.Time{ // atime, mtime
		"vm/disk.img": {y2100.Add(time.Hour), y2100},
		"vm/nvram":    {y2100, before1970},
		"fifo":        {before1970, before1970.Add(1)},
		"vm":          {y2100.Add(2), y2100.Add(3)},
	}
	for i, p := range slices.Backward(paths) {
		ts, ok := special[p]
		if !ok {
			base := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Add(time.Duration(i) * (time.Hour + 7919))
			ts = [2]time.Time{base.Add(-time.Minute - 13), base}
		}
		spec := []unix.Timespec{{Sec: ts[0].Unix(), Nsec: int64(ts[0].Nanosecond())}, {Sec: ts[1].Unix(), Nsec: int64(ts[1].Nanosecond())}}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, at(p), spec, unix.AT_SYMLINK_NOFOLLOW))
	}
	before := lstatAll(t, src, paths)
	if got := before["vm/disk.img"].Mtim; !time.Unix(got.Unix()).Equal(y2100) {
		t.Fatalf("the file system keeps mtime %v, not %v", time.Unix(got.Unix()), y2100)
	}

	srv := &memServer{store: memstore.New()}
	res, err := Publish(t.Context(), Config{Server: srv, Name: "everything", Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	m := srv.m
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if !m.Owners {
		t.Error("the manifest does not keep owners")
	}
	// Each hard linked file read and sent once: 2 data blocks of the disk,
	// 4 of nvram, all different.
	if res.Files != len(paths) || res.Blocks != 6 || res.ReusedBlocks != 0 || res.NewBlocks != 6 || res.Bytes != 10*int64(bs)+1000+int64(len(nvram)) {
		t.Errorf("result %+v: want %d files, 6 blocks, all new, %d bytes", res, len(paths), 10*bs+1000+len(nvram))
	}
	for link, primary := range map[string]string{"vm/sub/nvram.link": "vm/nvram", "fifo.2": "fifo"} {
		l, _ := m.Lookup(link)
		p, _ := m.Lookup(primary)
		if l == nil || p == nil || l.Link != primary || p.Link != "" {
			t.Fatalf("%s: entry %+v, want a link to %+v", link, l, p)
		}
		lc, pc := *l, *p
		lc.Path, lc.Link, pc.Path = "", "", ""
		if !reflect.DeepEqual(lc, pc) {
			t.Errorf("%s: fields %+v differ from its primary's %+v", link, lc, pc)
		}
	}
	if f, _ := m.Lookup("null"); f == nil || f.Mode != fs.ModeDevice|fs.ModeCharDevice|0o666 || f.Rdev != unix.Mkdev(1, 3) || f.GID != 5678 {
		t.Errorf("char device entry %+v", f)
	}
	if f, _ := m.Lookup("vm/nvram"); f == nil || !f.MTime.Equal(before1970) || !f.ATime.Equal(y2100) || f.UID != 1234 || f.Mode != 0o755|fs.ModeSetuid {
		t.Errorf("vm/nvram entry %+v", f)
	}

	// Through the binary form, as the server stores and sends it.
	data, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if m, err = manifest.Unmarshal(data); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if err := export.Export(t.Context(), srv, m, out); err != nil {
		t.Fatal(err)
	}
	if srv.fetched != 6 {
		t.Errorf("the export fetched %d blocks, want 6", srv.fetched)
	}
	// Lstat everything before reading anything, which could move atimes.
	after := lstatAll(t, out, paths)
	inodes := map[uint64]uint64{} // original inode: exported inode
	for _, p := range paths {
		a, b := before[p], after[p]
		if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid || a.Atim != b.Atim || a.Mtim != b.Mtim || a.Rdev != b.Rdev || a.Nlink != b.Nlink ||
			a.Mode&unix.S_IFMT != unix.S_IFDIR && a.Size != b.Size {
			t.Errorf("%s: exported as\n\tmode %#o uid %d gid %d size %d atime %v mtime %v rdev %#x nlink %d, was\n\tmode %#o uid %d gid %d size %d atime %v mtime %v rdev %#x nlink %d", p,
				b.Mode, b.Uid, b.Gid, b.Size, b.Atim, b.Mtim, b.Rdev, b.Nlink, a.Mode, a.Uid, a.Gid, a.Size, a.Atim, a.Mtim, a.Rdev, a.Nlink)
		}
		if ino, ok := inodes[a.Ino]; ok && ino != b.Ino {
			t.Errorf("%s: exported as inode %d, not as the other names of its inode (%d)", p, b.Ino, ino)
		}
		inodes[a.Ino] = b.Ino
	}
	if distinct := len(slices.Compact(slices.Sorted(maps.Values(inodes)))); distinct != len(inodes) {
		t.Errorf("%d inodes exported as %d", len(inodes), distinct)
	}
	if a, b := before["vm/disk.img"].Blocks, after["vm/disk.img"].Blocks; b > a+int64(bs)/512 {
		t.Errorf("the sparse file takes %d sectors exported, %d before", b, a)
	}
	var exported []string
	must(filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err == nil && path != out {
			rel, _ := filepath.Rel(out, path)
			exported = append(exported, filepath.ToSlash(rel))
		}
		return err
	}))
	if slices.Sort(exported); !slices.Equal(exported, paths) {
		t.Errorf("exported %q, want %q", exported, paths)
	}
	for _, p := range paths {
		switch before[p].Mode & unix.S_IFMT {
		case unix.S_IFREG:
			a, err := os.ReadFile(at(p))
			must(err)
			b, err := os.ReadFile(filepath.Join(out, p))
			must(err)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: contents differ after export", p)
			}
		case unix.S_IFLNK:
			a, _ := os.Readlink(at(p))
			if b, err := os.Readlink(filepath.Join(out, p)); err != nil || a != b {
				t.Errorf("%s: symlink to %q exported as %q (%v)", p, a, b, err)
			}
		}
	}
}

// lstatAll returns the lstat of each path under dir.
func lstatAll(t *testing.T, dir string, paths []string) map[string]unix.Stat_t {
	t.Helper()
	sts := make(map[string]unix.Stat_t, len(paths))
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, filepath.FromSlash(p)), &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		sts[p] = st
	}
	return sts
}
