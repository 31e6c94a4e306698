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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
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
	open := func(t *testing.T) storetest.Store { return openT(t, t.TempDir()) }
	storetest.Run(t, open, storetest.Options{Corrupt: corruptInDB})
}

// corruptInDB writes the block's frame back with one bit flipped, through
// badger directly, as a bit flip on disk would leave it.
func corruptInDB(t *testing.T, st storetest.Store, id blockstore.ID) {
	t.Helper()
	s := st.(*Store)
	key := blockKey(id)
	err := s.db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key[:])
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)-1] ^= 0x01
		return txn.Set(key[:], v)
	})
	if err != nil {
		t.Fatalf("corrupt %s: %v", id.Short(), err)
	}
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
	dir := t.TempDir()
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
	dir := t.TempDir()
	openT(t, dir)
	if s, err := Open(dir, testConfig(t)); err == nil {
		s.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
}

// TestCorruptOnDisk flips a byte of a block's frame in the value log file
// while the store is closed: the next Get must report ErrCorrupt.
func TestCorruptOnDisk(t *testing.T) {
	for i, b := range testBlocks(2)[:2] {
		t.Run([]string{"raw", "zstd"}[i], func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Put(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			s.Close()
			// Open and close once more: badger then writes to a new value
			// log file, and the block's file is no longer the last one,
			// which badger checks and truncates at its first bad entry
			// when it opens (see TestCorruptLastValueLog).
			s, err = Open(dir, testConfig(t))
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			flipInValueLog(t, dir, b.Frame)

			s = openT(t, dir)
			prefix := []byte("prefix")
			got, err := s.Get(t.Context(), b.ID, bytes.Clone(prefix))
			if !errors.Is(err, blockstore.ErrCorrupt) || !bytes.Equal(got, prefix) {
				t.Errorf("Get of a block tampered on disk: %d bytes, err = %v; want ErrCorrupt and no data", len(got)-len(prefix), err)
			}
			got, err = s.GetFrame(t.Context(), b.ID, bytes.Clone(prefix))
			if !errors.Is(err, blockstore.ErrCorrupt) || !bytes.Equal(got, prefix) {
				t.Errorf("GetFrame of a block tampered on disk: %d bytes, err = %v; want ErrCorrupt and no data", len(got)-len(prefix), err)
			}
		})
	}
}

// TestCorruptLastValueLog tampers with the newest value log file, which
// badger scans when it opens and truncates at the first entry whose CRC
// fails. The block's value pointer then points past the end of the file,
// and badger v4.9 hands back an empty value rather than an error: Open
// rejects it as corrupt. Whatever the error, no data may come out.
func TestCorruptLastValueLog(t *testing.T) {
	b := testBlocks(3)[0]
	dir := t.TempDir()
	s, err := Open(dir, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	s.Close()
	flipInValueLog(t, dir, b.Frame)
	s = openT(t, dir)
	got, err := s.Get(t.Context(), b.ID, nil)
	if err == nil || len(got) != 0 {
		t.Fatalf("Get of a block tampered in the last value log: %d bytes, err = %v; want an error and no data", len(got), err)
	}
	t.Logf("Get: %v", err)
}

// flipInValueLog finds frame in the value log files of dir and flips a bit
// in its middle.
func flipInValueLog(t *testing.T, dir string, frame []byte) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(data, frame)
		if i < 0 {
			continue
		}
		data[i+len(frame)/2] ^= 0x10
		if err := os.WriteFile(f, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("frame not found in the value log files %v", files)
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
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestDurableAfterSIGKILL$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = tWriter{t}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
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
	s, err := Open(t.TempDir(), cfg)
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
