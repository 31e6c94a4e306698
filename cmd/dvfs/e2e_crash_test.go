//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Records the crash test writes: record i lies at i*recStride and is
// recLen(i) bytes of a pattern derived from i; records never overlap and
// rarely align with blocks, so most writes copy a block up first.
const recStride = 100_003

func recLen(i int) int { return 1000 + (i*7919)%99_000 }

func recData(i int) []byte {
	b := make([]byte, recLen(i))
	rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), 'r'}).Read(b)
	return b
}

// writerMain runs in a child process: it writes records from $START on
// into $DVFS_E2E_WRITER, fsyncing every 8 and printing "synced N" after
// each fsync, until an error (the mount was killed) or $END.
func writerMain() {
	start, _ := strconv.Atoi(os.Getenv("START"))
	end, _ := strconv.Atoi(os.Getenv("END"))
	pace, _ := time.ParseDuration(os.Getenv("PACE")) // 0 when unset
	f, err := os.OpenFile(os.Getenv("DVFS_E2E_WRITER"), os.O_RDWR, 0)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for i := start; i < end; i++ {
		fmt.Printf("wrote %d\n", i) // before the write: it may land in part
		if _, err := f.WriteAt(recData(i), int64(i)*recStride); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		time.Sleep(pace)
		if i%8 == 7 {
			if err := f.Sync(); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Printf("synced %d\n", i)
		}
	}
	os.Exit(0)
}

// SIGKILL the mount in the middle of heavy writes, again and again: after
// each remount every record written before a successful fsync reads back
// exactly, and what no record touched still reads as the template.
func TestMountKilledDuringWrites(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	tmpl, _ := publishRandom(t, s, "base", 96<<20, 't')
	s.dvfs("clone", "create", "--template", "base", "crash")

	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	const maxRecords = (96 << 20) / recStride
	next, synced, touched := 0, -1, -1
	rounds := 8
	if testing.Short() {
		rounds = 3
	}
	for round := range rounds {
		m := s.startMount(t, cache, mnt)
		path := filepath.Join(mnt, "clones", "crash", "disk.vmdk")
		verify(t, path, tmpl, synced, touched)
		if next >= maxRecords-60 {
			next, synced = 0, -1 // start over: rewrite the same records
		}
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "DVFS_E2E_WRITER="+path, "START="+strconv.Itoa(next), "END="+strconv.Itoa(maxRecords))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		killAfter := 16 + rand.IntN(40) // records synced this round before the kill
		killed := false
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "wrote":
				touched = max(touched, n)
			case "synced":
				synced = n
				if !killed && n-next >= killAfter {
					// Kill while the writer keeps writing.
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
					m.kill()
					killed = true
				}
			}
		}
		cmd.Wait()
		if !killed {
			m.kill()
		}
		t.Logf("round %d: mount killed after record %d was fsynced (records %d..%d written this round)", round, synced, next, touched)
		next = synced + 1
	}
	m := s.startMount(t, cache, mnt)
	verify(t, filepath.Join(mnt, "clones", "crash", "disk.vmdk"), tmpl, synced, touched)
	m.unmount()
}

// verify checks records 0..synced and the bytes past the last record ever
// started, which must still be the template's.
func verify(t *testing.T, path string, tmpl []byte, synced, touched int) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(tmpl) {
		t.Fatalf("size %d, want %d", len(got), len(tmpl))
	}
	for i := 0; i <= synced; i++ {
		off := i * recStride
		if want := recData(i); !bytes.Equal(got[off:off+len(want)], want) {
			t.Fatalf("record %d (fsynced) does not read back", i)
		}
		// Between records lies template data no write touched.
		gap := got[off+recLen(i) : (i+1)*recStride]
		if !bytes.Equal(gap, tmpl[off+recLen(i):(i+1)*recStride]) {
			t.Fatalf("template bytes after record %d changed", i)
		}
	}
	if rest := (touched + 1) * recStride; rest < len(tmpl) && !bytes.Equal(got[rest:], tmpl[rest:]) {
		t.Fatalf("bytes past the last record (from %d) differ from the template", rest)
	}
}
