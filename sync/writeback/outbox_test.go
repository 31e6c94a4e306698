package writeback

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// testBlock is block i of seed's deterministic data, n bytes long.
func testBlock(seed, i, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(seed), uint64(i)))
	b := make([]byte, n)
	for k := range b {
		b[k] = byte(r.Uint32())
	}
	return b
}

// writeOutbox writes blocks 0..n-1 of seed (from several goroutines, as a
// seal does) to outbox file name and returns their IDs.
func writeOutbox(t testing.TB, o *outbox, name string, seed, n, size int) map[blockstore.ID][]byte {
	w := o.create(name)
	want := make(map[blockstore.ID][]byte)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			p := testBlock(seed, i, size-i%3) // short blocks too
			rec := append(make([]byte, outboxRecHdr), p...)
			id := blockstore.Sum(p)
			mu.Lock()
			want[id] = p
			mu.Unlock()
			var d delta
			if i%2 == 1 { // every other block with a delta
				d = delta{base: blockstore.Sum([]byte{byte(i)}), mask: uint64(i), sectorSize: 4096}
			}
			errs <- w.add(id, rec, d)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.finish(); err != nil {
		t.Fatal(err)
	}
	return want
}

func readOutbox(o *outbox, name string) (map[blockstore.ID][]byte, error) {
	got := make(map[blockstore.ID][]byte)
	err := o.scan(context.Background(), name, func(id blockstore.ID, plain []byte, d delta) error {
		got[id] = bytes.Clone(plain)
		if d.ok() && (d.mask == 0 || d.sectorSize != 4096 || d.base != blockstore.Sum([]byte{byte(d.mask)})) {
			return fmt.Errorf("block %s: delta %+v read back wrong", id.Short(), d)
		}
		return nil
	})
	return got, err
}

// TestOutboxFormat1: a file written in format 1 (before deltas) by an
// earlier version, still pending at an upgrade, reads back.
func TestOutboxFormat1(t *testing.T) {
	dir := disktest.TempDir(t)
	o, _ := openOutbox(dir)
	f := []byte(outboxMagicV1)
	want := make(map[blockstore.ID][]byte)
	for i := range 5 {
		p := testBlock(7, i, 65536-i)
		id := blockstore.Sum(p)
		want[id] = p
		f = append(f, id[:]...)
		f = binary.BigEndian.AppendUint32(f, uint32(len(p)))
		f = binary.BigEndian.AppendUint32(f, crc32.Checksum(p, crcTable))
		f = append(f, p...)
	}
	if err := os.WriteFile(filepath.Join(dir, "old"), f, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readOutbox(o, "old")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d blocks, wrote %d", len(got), len(want))
	}
	for id, p := range want {
		if !bytes.Equal(got[id], p) {
			t.Fatalf("block %s differs", id.Short())
		}
	}
}

func TestOutboxRoundTrip(t *testing.T) {
	o, err := openOutbox(disktest.TempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		blocks int
	}{{"one", 1}, {"many", 200}} {
		t.Run(tc.name, func(t *testing.T) {
			want := writeOutbox(t, o, tc.name, 1, tc.blocks, 64<<10)
			got, err := readOutbox(o, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("read %d blocks, wrote %d", len(got), len(want))
			}
			for id, p := range want {
				if !bytes.Equal(got[id], p) {
					t.Fatalf("block %s differs", id.Short())
				}
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		w := o.create("empty")
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		if w.file() != "" {
			t.Fatalf("a writer with no blocks made file %q", w.file())
		}
		if _, err := os.Stat(filepath.Join(o.dir, "empty")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("file of an empty seal: %v", err)
		}
	})
}

// TestOutboxDamage: a file cut short or changed never yields wrong bytes.
func TestOutboxDamage(t *testing.T) {
	dir := disktest.TempDir(t)
	o, _ := openOutbox(dir)
	want := writeOutbox(t, o, "f", 2, 8, 4096)
	whole, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"no header", func(b []byte) []byte { return b[:3] }},
		{"torn record header", func(b []byte) []byte { return b[:len(outboxMagic)+outboxRecHdr/2] }},
		{"torn data", func(b []byte) []byte { return b[:len(b)-100] }},
		{"flipped data bit", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"flipped delta bit", func(b []byte) []byte { b[len(outboxMagic)+outboxRecHdrV1+3] ^= 1; return b }},
		{"huge length", func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[len(outboxMagic)+blockstore.IDSize:], 1<<30)
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			if err := os.WriteFile(filepath.Join(dir, name), tc.damage(bytes.Clone(whole)), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readOutbox(o, name)
			if !errors.Is(err, errOutboxCorrupt) {
				t.Fatalf("scan of a damaged file: %v, want errOutboxCorrupt", err)
			}
			for id, p := range got {
				if !bytes.Equal(want[id], p) {
					t.Fatalf("scan returned wrong bytes for %s before the damage", id.Short())
				}
			}
		})
	}
}

func TestOutboxSweep(t *testing.T) {
	dir := disktest.TempDir(t)
	o, _ := openOutbox(dir)
	for _, n := range []string{"a-1", "a-2", "a-3", "b-1"} {
		writeOutbox(t, o, n, 3, 1, 100)
	}
	if err := o.sweep("a-", "a-2"); err != nil {
		t.Fatal(err)
	}
	des, _ := os.ReadDir(dir)
	var left []string
	for _, de := range des {
		left = append(left, de.Name())
	}
	if strings.Join(left, " ") != "a-2 b-1" {
		t.Fatalf("left after sweep: %v, want a-2 b-1", left)
	}
}

// The crash test's child writes outbox files in a loop and records each in
// a log (as the writeback records a pending generation) once finish
// returns; the parent kills it at random moments and checks that every
// recorded file reads back whole.
const crashChildEnv = "DVFS_OUTBOX_CRASH_CHILD"

func TestOutboxCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		// Not a test of its own, in CI or anywhere: the child half of
		// TestOutboxCrash, which runs it with crashChildEnv set.
		return
	}
	o, err := openOutbox(filepath.Join(dir, "outbox"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(filepath.Join(dir, "log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for seed := int(time.Now().UnixNano() % 1e9); ; seed++ {
		name := fmt.Sprintf("f-%d", seed)
		writeOutbox(t, o, name, seed, 1+seed%40, 64<<10)
		if _, err := fmt.Fprintf(log, "%d\n", seed); err != nil {
			t.Fatal(err)
		}
		if err := log.Sync(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutboxCrash(t *testing.T) {
	if testing.Short() && os.Getenv("CI") == "" {
		t.Skip("kills a child process repeatedly (runs in CI, even with -short)")
	}
	dir := disktest.TempDir(t)
	checked := 0
	for round := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOutboxCrashChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		b, _ := os.ReadFile(filepath.Join(dir, "log"))
		lines := strings.Fields(string(b))
		o, _ := openOutbox(filepath.Join(dir, "outbox"))
		for _, l := range lines {
			seed, _ := strconv.Atoi(l)
			n := 1 + seed%40
			got, err := readOutbox(o, fmt.Sprintf("f-%d", seed))
			if err != nil {
				t.Fatalf("round %d: recorded file of seed %d: %v", round, seed, err)
			}
			if len(got) != n {
				t.Fatalf("round %d: recorded file of seed %d has %d blocks, want %d", round, seed, len(got), n)
			}
			for i := range n {
				p := testBlock(seed, i, 64<<10-i%3)
				if !bytes.Equal(got[blockstore.Sum(p)], p) {
					t.Fatalf("round %d: seed %d block %d lost or wrong", round, seed, i)
				}
			}
			checked++
		}
		// What the log does not name is a write the kill cut short: the
		// sweep (keeping nothing) must clear it all.
		if err := o.sweep("f-", ""); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(dir, "log"))
	}
	t.Logf("%d recorded files checked", checked)
}

// FuzzOutboxScan: whatever an outbox file holds, scan returns records that
// passed their checksum or an error wrapping errOutboxCorrupt, never a
// panic or a delta it would not write.
func FuzzOutboxScan(f *testing.F) {
	dir := disktest.TempDir(f)
	o, _ := openOutbox(dir)
	writeOutbox(f, o, "seed", 3, 3, 4096)
	seed, _ := os.ReadFile(filepath.Join(dir, "seed"))
	f.Add(seed)
	f.Add(append([]byte(outboxMagicV1), seed[len(outboxMagic):]...))
	f.Add([]byte(outboxMagic))
	// A record of sectors alone.
	w := o.create("sectors")
	sec := testBlock(4, 0, 2*4096)
	if err := w.add(blockstore.ID{1}, append(make([]byte, outboxRecHdr), sec...), delta{base: blockstore.ID{2}, mask: 0b101, sectorSize: 4096, whole: 4 * 4096}); err != nil {
		f.Fatal(err)
	}
	if err := w.finish(); err != nil {
		f.Fatal(err)
	}
	seed2, _ := os.ReadFile(filepath.Join(dir, "sectors"))
	f.Add(seed2)
	f.Fuzz(func(t *testing.T, data []byte) {
		tf, err := os.CreateTemp(dir, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(tf.Name())
		_, err = tf.Write(data)
		if cerr := tf.Close(); err != nil || cerr != nil {
			t.Fatal(err, cerr)
		}
		err = o.scan(context.Background(), filepath.Base(tf.Name()), func(id blockstore.ID, plain []byte, d delta) error {
			if len(plain) > blockstore.MaxBlockSize {
				t.Fatalf("record of %d bytes", len(plain))
			}
			if d.ok() && (d.sectorSize < 512 || d.sectorSize&(d.sectorSize-1) != 0) {
				t.Fatalf("delta with sector size %d", d.sectorSize)
			}
			if d.whole != 0 {
				// What upload makes of it must not panic.
				blockstore.AppendDeltaFrameSectors(nil, d.base, d.sectorSize, d.mask, d.whole, plain)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errOutboxCorrupt) {
			t.Fatalf("error not wrapping errOutboxCorrupt: %v", err)
		}
	})
}

// TestOutboxFormat2: a file of format 2 (whole blocks with deltas, before
// records of sectors alone) reads back; its last header field, always
// zero there, is not taken for a length.
func TestOutboxFormat2(t *testing.T) {
	o, err := openOutbox(disktest.TempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	want := writeOutbox(t, o, "f", 3, 20, 5000)
	path := filepath.Join(o.dir, "f")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	copy(b, outboxMagicV2)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readOutbox(o, "f")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d blocks, want %d", len(got), len(want))
	}
	for id, p := range want {
		if !bytes.Equal(got[id], p) {
			t.Fatalf("block %s differs", id.Short())
		}
	}
}
