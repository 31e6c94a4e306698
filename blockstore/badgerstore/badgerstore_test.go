package badgerstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// testConfig logs through t, so badger's warnings show up in the failing
// test's output.
func testConfig(t *testing.T) Config {
	return Config{Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// wineNoHoles is why the tests of freed space skip under Wine: it has no
// sparse files (FSCTL_SET_ZERO_DATA is "not supported"), so a punch
// writes zeros and frees nothing. NTFS frees the space.
const wineNoHoles = "no sparse files in Wine: a punch writes zeros and frees nothing"

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	open := func(t *testing.T) storetest.Store { return openT(t, disktest.TempDir(t)) }
	storetest.Run(t, open, storetest.Options{Corrupt: corruptInDB})
}

// TestConformanceDirect runs the suite on stores that write their packs
// with O_DIRECT, volatile and durable, and as a workstation's cache opens
// its store (volatile, its puts verified, its reads direct too), and checks
// that the writes really went past the page cache.
func TestConformanceDirect(t *testing.T) {
	for _, mode := range []struct{ volatile, verified, reads bool }{{true, false, false}, {false, false, false}, {true, true, false}, {true, true, true}} {
		t.Run(fmt.Sprintf("volatile=%v,verified=%v,reads=%v", mode.volatile, mode.verified, mode.reads), func(t *testing.T) {
			var last *Store
			open := func(t *testing.T) storetest.Store {
				cfg := testConfig(t)
				cfg.DirectWrites, cfg.Volatile, cfg.VerifiedPuts, cfg.DirectReads = true, mode.volatile, mode.verified, mode.reads
				s, err := Open(disktest.TempDir(t), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				last = s
				return s
			}
			storetest.Run(t, open, storetest.Options{Corrupt: corruptInDB, Plain: mode.verified})
			// O_DIRECT is Linux's (diskio.OpenDirect): elsewhere the
			// suite runs on the buffered writes a store falls back to.
			if runtime.GOOS == "linux" && (last == nil || !last.packs.direct) {
				t.Fatal("the store fell back to buffered writes on the test's file system")
			}
		})
	}
	// Blocks written direct, of every shape, read back after reopening
	// (the page cache never held them).
	dir := disktest.TempDir(t)
	s := openDirectT(t, dir)
	blocks := append(testBlocks(10), testBlocks(11)...)
	if err := s.Put(t.Context(), blocks[:4]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), blocks[4:]...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir)
	checkBlocks(t, s, blocks)
}

// openDirectT opens a durable store in dir that writes with O_DIRECT.
func openDirectT(t *testing.T, dir string) *Store {
	t.Helper()
	cfg := testConfig(t)
	cfg.DirectWrites = true
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestDirectAligned checks that a direct write takes payloads that lie
// aligned (as a multicast receiver places raw blocks) without staging
// them, mixed in one Put with payloads that must be staged, and that all
// of them read back.
func TestDirectAligned(t *testing.T) {
	if runtime.GOOS != "linux" {
		// CI runs this test in its Linux run (where this does not skip); only
		// the Wine run (.ci/wine), on Windows, skips it.
		disktest.SkipOffLinux(t, "O_DIRECT is Linux's here (diskio.OpenDirect): nothing is staged for it elsewhere")
	}
	dir := disktest.TempDir(t)
	s := openDirectT(t, dir)
	r := rand.New(rand.NewPCG(12, 12))
	var blocks []blockstore.Block
	var wantStaged int64
	for i := range 40 {
		b := storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize))
		_, payload, _ := blockstore.SplitFrame(b.Frame)
		if i%3 != 0 {
			// Placed so, the payload is aligned.
			h := blockstore.RawHeaderLen(len(b.Frame))
			f := diskio.AlignedBufferAt(len(b.Frame), h)
			copy(f, b.Frame)
			b.Frame = f
		} else {
			wantStaged += alignUp(int64(len(payload)))
		}
		blocks = append(blocks, b)
	}
	for _, b := range testBlocks(13) { // zstd and short payloads: staged
		_, payload, _ := blockstore.SplitFrame(b.Frame)
		wantStaged += alignUp(int64(len(payload)))
		blocks = append(blocks, b)
	}
	if err := s.Put(t.Context(), blocks...); err != nil {
		t.Fatal(err)
	}
	if got := s.packs.staged.Load(); got != wantStaged {
		t.Errorf("staged %d bytes, want %d (only the unaligned payloads)", got, wantStaged)
	}
	s.Close()
	s = openT(t, dir)
	checkBlocks(t, s, blocks)
}

// corruptInDB writes the block's frame back with one bit flipped, through
// badger directly, as a bit flip on disk would leave it.
func corruptInDB(t *testing.T, st storetest.Store, id blockstore.ID) {
	t.Helper()
	s := st.(*Store)
	r := refOf(t, s, id)
	f, err := os.OpenFile(filepath.Join(s.packs.dir, packName(r.pack)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := r.off + int64(r.n)/2
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// refOf returns the index entry of block id.
func refOf(t *testing.T, s *Store, id blockstore.ID) ref {
	t.Helper()
	var r ref
	isRef, err := s.lookup(id, &r, func([]byte) error { return nil })
	if err != nil || !isRef {
		t.Fatalf("index entry of %s: ref %v, %v", id.Short(), isRef, err)
	}
	return r
}

// testBlocks returns a raw 64 KiB block, a zstd 64 KiB block and a short
// one, the same for the same seed.
func testBlocks(seed uint64) []blockstore.Block {
	r := rand.New(rand.NewPCG(seed, seed))
	return []blockstore.Block{
		storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)),
		storetest.NewBlock(storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)),
		storetest.NewBlock(storetest.RandomBytes(r, 3000)),
	}
}

// checkBlocks checks that every block is in s, with its bytes.
func checkBlocks(t *testing.T, s *Store, blocks []blockstore.Block) {
	t.Helper()
	for _, b := range blocks {
		want, err := blockstore.Open(b.ID, b.Frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(t.Context(), b.ID, nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("Get %s: %d bytes, %v", b.ID.Short(), len(got), err)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := disktest.TempDir(t)
	blocks := testBlocks(1)
	s, err := Open(dir, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitMeta(ctx, blockstore.MetaOp{Key: "head", Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s = openT(t, dir)
	checkBlocks(t, s, blocks)
	if v, err := s.GetMeta(ctx, "head"); err != nil || string(v) != "v1" {
		t.Errorf("GetMeta after reopen = %q, %v", v, err)
	}
	n := 0
	if err := s.Walk(ctx, func(blockstore.ID) error { n++; return nil }); err != nil || n != len(blocks) {
		t.Errorf("Walk after reopen: %d blocks, %v; want %d", n, err, len(blocks))
	}
}

func TestOpenLockedDir(t *testing.T) {
	dir := disktest.TempDir(t)
	openT(t, dir)
	if s, err := Open(dir, testConfig(t)); err == nil {
		s.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

// TestCorruptOnDisk flips a byte of a block's payload in its pack file
// while the store is closed: the next Get must report ErrCorrupt.
func TestCorruptOnDisk(t *testing.T) {
	for i, b := range testBlocks(2)[:2] {
		t.Run([]string{"raw", "zstd"}[i], func(t *testing.T) {
			dir := disktest.TempDir(t)
			s, err := Open(dir, testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, payload, err := blockstore.SplitFrame(b.Frame)
			if err != nil {
				t.Fatal(err)
			}
			flipInPacks(t, dir, payload)

			s = openT(t, dir)
			expectNoData(t, s, b.ID, blockstore.ErrCorrupt)
		})
	}
}

// expectNoData checks that Get and GetFrame of id fail with want and
// leave dst as it was.
func expectNoData(t *testing.T, s *Store, id blockstore.ID, want error) {
	t.Helper()
	prefix := []byte("prefix")
	got, err := s.Get(t.Context(), id, bytes.Clone(prefix))
	if !errors.Is(err, want) || !bytes.Equal(got, prefix) {
		t.Errorf("Get: %d bytes, err = %v; want %v and no data", len(got)-len(prefix), err, want)
	}
	got, err = s.GetFrame(t.Context(), id, bytes.Clone(prefix))
	if !errors.Is(err, want) || !bytes.Equal(got, prefix) {
		t.Errorf("GetFrame: %d bytes, err = %v; want %v and no data", len(got)-len(prefix), err, want)
	}
}

// TestDamagedPacks: a pack cut short, a pack removed, and index entries
// tampered with (another offset, a bad header, a truncated entry) each
// give ErrCorrupt and no data.
func TestDamagedPacks(t *testing.T) {
	ctx := t.Context()
	cases := []struct {
		name   string
		damage func(t *testing.T, s *Store, dir string, b blockstore.Block)
	}{
		{"pack truncated", func(t *testing.T, s *Store, dir string, b blockstore.Block) {
			r := refOf(t, s, b.ID)
			if err := os.Truncate(filepath.Join(dir, "packs", packName(r.pack)), r.off+int64(r.n)/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"pack removed", func(t *testing.T, s *Store, dir string, b blockstore.Block) {
			if runtime.GOOS == "windows" {
				// CI runs this test in its Linux run (where this does not skip); only
				// the Wine run (.ci/wine), on Windows, skips it.
				disktest.SkipOffLinux(t, "Windows removes no file the store holds open")
			}
			r := refOf(t, s, b.ID)
			if err := os.Remove(filepath.Join(dir, "packs", packName(r.pack))); err != nil {
				t.Fatal(err)
			}
		}},
		{"entry points elsewhere", func(t *testing.T, s *Store, dir string, b blockstore.Block) {
			r := refOf(t, s, b.ID)
			r.off += packAlign
			setEntry(t, s, b.ID, appendRef(nil, &r))
		}},
		{"entry with a bad header", func(t *testing.T, s *Store, dir string, b blockstore.Block) {
			r := refOf(t, s, b.ID)
			r.hdr[0] = 7
			setEntry(t, s, b.ID, appendRef(nil, &r))
		}},
		{"entry cut short", func(t *testing.T, s *Store, dir string, b blockstore.Block) {
			r := refOf(t, s, b.ID)
			setEntry(t, s, b.ID, appendRef(nil, &r)[:10])
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := disktest.TempDir(t)
			blocks := testBlocks(6)
			s := openT(t, dir)
			if err := s.Put(ctx, blocks...); err != nil {
				t.Fatal(err)
			}
			// The last block is alone in its page run at the end of the
			// pack: damage it, and check the others still read.
			c.damage(t, s, dir, blocks[2])
			s.Close()
			s = openT(t, dir)
			expectNoData(t, s, blocks[2].ID, blockstore.ErrCorrupt)
			if c.name != "pack removed" {
				checkBlocks(t, s, blocks[:2])
			}
		})
	}
}

// setEntry overwrites the index entry of id.
func setEntry(t *testing.T, s *Store, id blockstore.ID, v []byte) {
	t.Helper()
	key := blockKey(id)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key[:], v) }); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyEntries: stores written before pack files kept each frame as
// its key's value; such blocks still read, verify and delete.
func TestLegacyEntries(t *testing.T) {
	ctx := t.Context()
	s := openT(t, disktest.TempDir(t))
	blocks := testBlocks(7)
	for _, b := range blocks {
		setEntry(t, s, b.ID, b.Frame)
	}
	checkBlocks(t, s, blocks)
	bad := bytes.Clone(blocks[0].Frame)
	bad[len(bad)/2] ^= 1
	setEntry(t, s, blocks[0].ID, bad)
	expectNoData(t, s, blocks[0].ID, blockstore.ErrCorrupt)
	if err := s.Delete(ctx, blocks[1].ID); err != nil {
		t.Fatal(err)
	}
	expectNoData(t, s, blocks[1].ID, blockstore.ErrNotFound)
}

// TestDeleteFreesSpace: deleting blocks punches their ranges out of the
// packs at once, and a pack whose every block is gone is removed; the
// blocks left read back, also after reopening, across several packs.
func TestDeleteFreesSpace(t *testing.T) {
	// CI runs this test in its Linux run (where this does not skip); only
	// the Wine run (.ci/wine), on Windows, skips it.
	disktest.SkipUnderWine(t, wineNoHoles)
	ctx := t.Context()
	dir := disktest.TempDir(t)
	cfg := testConfig(t)
	cfg.PackSize = 1 << 20 // 16 raw blocks a pack
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(8, 8))
	var blocks []blockstore.Block
	for range 64 {
		blocks = append(blocks, storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)))
	}
	for i := 0; i < len(blocks); i += 8 {
		if err := s.Put(ctx, blocks[i:i+8]...); err != nil {
			t.Fatal(err)
		}
	}
	packs := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "packs", "*"+packSuffix))
		return m
	}
	before, n := s.packs.usage(), len(packs())
	if n != 4 || before < 64*blockstore.DefaultBlockSize {
		t.Fatalf("%d packs holding %d bytes; want 4 holding at least 4 MiB", n, before)
	}
	// Every block of the first pack, and every other block of the rest.
	var gone []blockstore.ID
	var kept []blockstore.Block
	for i, b := range blocks {
		if i < 16 || i%2 == 0 {
			gone = append(gone, b.ID)
		} else {
			kept = append(kept, b)
		}
	}
	if err := s.Delete(ctx, gone...); err != nil {
		t.Fatal(err)
	}
	after := s.packs.usage()
	t.Logf("packs: %d -> %d, disk use %d -> %d bytes after deleting %d of %d blocks", n, len(packs()), before, after, len(gone), len(blocks))
	if len(packs()) != 3 {
		t.Errorf("%d packs after the first one emptied; want 3", len(packs()))
	}
	// The file system may keep a few blocks of its own per file (extent
	// tree nodes).
	if want := before - int64(len(gone))*blockstore.DefaultBlockSize + 3*16<<10; after > want {
		t.Errorf("disk use %d after deletes; want at most %d", after, want)
	}
	checkBlocks(t, s, kept)
	for _, id := range gone {
		expectNoData(t, s, id, blockstore.ErrNotFound)
	}
	s.Close()
	s, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkBlocks(t, s, kept)
	// New blocks go to a new pack, never after an old pack's end.
	extra := storetest.NewBlock(storetest.RandomBytes(r, 100))
	if err := s.Put(ctx, extra); err != nil {
		t.Fatal(err)
	}
	if got := refOf(t, s, extra.ID).pack; got != 5 {
		t.Errorf("a Put after reopening went to pack %d; want the new pack 5", got)
	}
}

// TestConcurrentDeleteAndGet: a block deleted while readers read it gives
// them its bytes or ErrNotFound, never ErrCorrupt.
func TestConcurrentDeleteAndGet(t *testing.T) {
	ctx := t.Context()
	s := openT(t, disktest.TempDir(t))
	r := rand.New(rand.NewPCG(9, 9))
	for round := range 50 {
		b := storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize))
		if err := s.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for range 20 {
					_, err := s.Get(ctx, b.ID, nil)
					if err != nil && !errors.Is(err, blockstore.ErrNotFound) {
						t.Errorf("round %d: Get during Delete: %v", round, err)
						return
					}
				}
			})
		}
		if err := s.Delete(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
	}
}

// flipInPacks finds payload in the pack files of the store in dir and
// flips a bit in its middle.
func flipInPacks(t *testing.T, dir string, payload []byte) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "packs", "*"+packSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, payload)
		if i < 0 {
			continue
		}
		data[i+len(payload)/2] ^= 0x10
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("payload not found in the pack files %v", files)
}

// crashEnv names the store directory when the test binary runs as the
// child of TestDurableAfterSIGKILL.
const crashEnv = "DVFS_BADGERSTORE_CRASH_DIR"

// TestDurableAfterSIGKILL runs a child process that puts blocks and commits
// metadata, says "done", and is killed with SIGKILL without closing the
// store. Everything it was told was stored must be there on reopen.
func TestDurableAfterSIGKILL(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	dir := disktest.TempDir(t)
	cmd, sc := startChild(t, "TestDurableAfterSIGKILL", crashEnv, dir)
	done := make(chan bool, 1)
	go func() {
		for sc.Scan() {
			if sc.Text() == "done" {
				done <- true
				return
			}
			t.Logf("child: %s", sc.Text())
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			cmd.Wait()
			t.Fatal("child exited without saying done")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child did not say done within 30s")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited cleanly; it should have been killed")
	}

	s := openT(t, dir)
	checkBlocks(t, s, crashBlocks())
	for k, want := range map[string]string{"head": "v2", "other": "x"} {
		if v, err := s.GetMeta(t.Context(), k); err != nil || string(v) != want {
			t.Errorf("GetMeta(%q) after SIGKILL = %q, %v; want %q", k, v, err, want)
		}
	}
}

// startChild runs test (this binary's test of that name) as a child
// process with env set to dir, its stderr in t's log, and returns it with
// a scanner over its stdout.
func startChild(t *testing.T, test, env, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = tWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}

func crashBlocks() []blockstore.Block {
	return append(testBlocks(4), testBlocks(5)...)
}

// crashChild is the child of TestDurableAfterSIGKILL: it never returns.
func crashChild(t *testing.T, dir string) {
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	blocks := crashBlocks()
	if err := s.Put(ctx, blocks[:3]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, blocks[3:]...); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitMeta(ctx, blockstore.MetaOp{Key: "head", Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitMeta(ctx,
		blockstore.MetaOp{Key: "head", Value: []byte("v2"), Check: true, Old: []byte("v1")},
		blockstore.MetaOp{Key: "other", Value: []byte("x")},
	); err != nil {
		t.Fatal(err)
	}
	fmt.Println("done")
	select {} // wait for SIGKILL, the store still open
}

// TestGCLoop runs value log GC on a short interval while blocks come and
// go, and checks that Close stops it.
func TestGCLoop(t *testing.T) {
	var logs syncBuffer
	cfg := Config{
		Logger:           slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		GCInterval:       5 * time.Millisecond,
		ValueLogFileSize: 1 << 20, // badger's minimum, so there are several files
	}
	s, err := Open(disktest.TempDir(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := range 10 {
		blocks := testBlocks(uint64(100 + i))
		if err := s.Put(ctx, blocks...); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := s.Delete(ctx, blocks[0].ID, blocks[1].ID); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if logs.String() != "" {
		t.Errorf("warnings while GC ran:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSlogAdapter(t *testing.T) {
	var buf syncBuffer
	a := slogAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	a.Errorf("e %d\n", 1)
	a.Warningf("w %d", 2)
	a.Infof("i %d", 3)
	a.Debugf("d %d", 4) // below Debug: dropped
	got := buf.String()
	for _, want := range []string{`level=ERROR msg="e 1"`, `level=WARN msg="w 2"`, `level=DEBUG msg="i 3"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(got, "d 4") {
		t.Errorf("badger's Debugf reached a Debug log:\n%s", got)
	}
}
