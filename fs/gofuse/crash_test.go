//go:build linux

package gofuse_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// helperServe mounts the standard world with its overlay in dir (a
// badger Meta in dir/meta, data in dir/state) at dir/mnt, says "ready",
// and serves until stdin closes (then it unmounts cleanly and says
// "clean") or it is killed.
func helperServe(dir string) {
	w, err := standardWorld()
	check(err)
	meta, err := badgerstore.Open(filepath.Join(dir, "meta"), badgerstore.Config{GCInterval: -1})
	check(err)
	core, err := fs.New(fs.Config{
		Blocks: w.Blocks, Catalog: w.Catalog, Meta: meta,
		StateDir:      filepath.Join(dir, "state"),
		FlushInterval: 100 * time.Millisecond, // flushes race the writes
	})
	check(err)
	srv, err := gofuse.Mount(filepath.Join(dir, "mnt"), core, gofuse.Options{})
	check(err)
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	check(srv.Unmount())
	check(core.Close(context.Background()))
	check(meta.Close())
	fmt.Println("clean")
}

// crashFile is what the parent knows of one file: the bytes that must be
// there (synced), and the writes since the last successful fsync, which
// may or may not be.
type crashFile struct {
	path    string
	synced  []byte
	pending []pendingWrite
}

type pendingWrite struct {
	off  int64
	data []byte
}

// check reads the file back after a crash: every byte must be the synced
// one or come from a pending write (past the synced end: zero, or a
// pending write). Then what it read is the new synced state.
func (cf *crashFile) check(t *testing.T, mnt string, round int) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(mnt, cf.path))
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	maxEnd := int64(len(cf.synced))
	for _, w := range cf.pending {
		maxEnd = max(maxEnd, w.off+int64(len(w.data)))
	}
	if len(got) < len(cf.synced) || int64(len(got)) > maxEnd {
		t.Fatalf("round %d: %s is %d bytes, want from %d (synced) to %d", round, cf.path, len(got), len(cf.synced), maxEnd)
	}
	for i := range got {
		if i < len(cf.synced) && got[i] == cf.synced[i] || i >= len(cf.synced) && got[i] == 0 {
			continue
		}
		ok := false
		for _, w := range cf.pending {
			if j := int64(i) - w.off; j >= 0 && j < int64(len(w.data)) && w.data[j] == got[i] {
				ok = true
				break
			}
		}
		if !ok {
			want := byte(0)
			if i < len(cf.synced) {
				want = cf.synced[i]
			}
			t.Fatalf("round %d: %s byte %d is %#x: neither the synced %#x nor from a write since", round, cf.path, i, got[i], want)
		}
	}
	cf.synced, cf.pending = got, nil
}

// TestCrash SIGKILLs the serving process in the middle of heavy writes
// and fsyncs, force-unmounts, remounts in a new process and checks every
// file: all that an fsync acknowledged is there, and nothing else but
// what was written since.
func TestCrash(t *testing.T) {
	requireFuse(t)
	dir := t.TempDir()
	for _, d := range []string{"meta", "state", "mnt"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) }) // after a failure
	files := []*crashFile{
		{path: "clones/alice/disk.vmdk", synced: fstest.VMEntry(2, "disk.vmdk").Bytes()},
		{path: "clones/alice/crash.bin"},
	}
	rng := rand.New(rand.NewPCG(7, 7))
	const rounds = 4
	seq := uint64(0)
	for round := 0; ; round++ {
		c := helper(t, "serve", dir)
		expectLine(t, c.lines, "ready")
		if round == 0 {
			if err := os.WriteFile(filepath.Join(mnt, files[1].path), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, cf := range files {
			cf.check(t, mnt, round)
		}
		if round == rounds {
			if err := c.wait(); err != nil {
				t.Fatalf("clean unmount: %v", err)
			}
			expectLine(t, c.lines, "clean")
			return
		}
		var fds []*os.File
		for _, cf := range files {
			f, err := os.OpenFile(filepath.Join(mnt, cf.path), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, f)
		}
		killed := make(chan struct{})
		delay := time.Duration(150+rng.IntN(500)) * time.Millisecond
		go func() {
			time.Sleep(delay)
			c.cmd.Process.Kill()
			close(killed)
		}()
		writes, syncs := 0, 0
	write:
		for {
			select {
			case <-killed:
				break write
			default:
			}
			i := rng.IntN(len(files))
			cf := files[i]
			seq++
			data := make([]byte, 1+rng.IntN(200<<10))
			fstest.Fill(data, 99, seq)
			off := rng.Int64N(6 << 20)
			cf.pending = append(cf.pending, pendingWrite{off, data})
			if _, err := fds[i].WriteAt(data, off); err != nil {
				break
			}
			writes++
			if writes%6 == 0 {
				for i, f := range fds {
					if f.Sync() != nil {
						break write
					}
					cf := files[i]
					for _, w := range cf.pending {
						if end := w.off + int64(len(w.data)); end > int64(len(cf.synced)) {
							cf.synced = append(cf.synced, make([]byte, end-int64(len(cf.synced)))...)
						}
						copy(cf.synced[w.off:], w.data)
					}
					cf.pending = nil
					syncs++
				}
			}
		}
		<-killed
		c.wait()
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Fatalf("force unmount: %v", err)
		}
		for _, f := range fds {
			f.Close()
		}
		t.Logf("round %d: %d writes, %d fsyncs before the kill", round, writes, syncs)
	}
}
