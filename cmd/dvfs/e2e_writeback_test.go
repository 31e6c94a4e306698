//go:build linux

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// publishBase publishes a template with one 96 MiB random disk and makes
// a clone of it; it returns the disk's bytes.
func publishBase(t *testing.T, s *serverProc, clone string) []byte {
	t.Helper()
	vm := filepath.Join(t.TempDir(), "tpl")
	os.Mkdir(vm, 0o755)
	tmpl := make([]byte, 96<<20)
	rand.NewChaCha8([32]byte{'w'}).Read(tmpl)
	os.WriteFile(filepath.Join(vm, "disk.vmdk"), tmpl, 0o644)
	os.WriteFile(filepath.Join(vm, "disk.vmx"), []byte("displayName = \"base\"\n"), 0o644)
	s.dvfs("template", "publish", "--name", "base", vm)
	s.dvfs("clone", "create", "--template", "base", clone)
	return tmpl
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// shell runs a command in a separate process (the test must not do I/O on
// a mount from the process that... it does not serve, but external clients
// are what users run) and returns its combined output and error.
func shell(script string) (string, error) {
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	return string(out), err
}

// Write on workstation A, unmount, open on workstation B (its own process
// and cache): B sees exactly what A wrote.
func TestCloneMovesBetweenWorkstations(t *testing.T) { cloneMovesBetween(t, nil, nil) }

// cloneMovesBetween is TestCloneMovesBetweenWorkstations with extra mount
// flags for A and for B.
func cloneMovesBetween(t *testing.T, extraA, extraB []string) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	a := s.startMount(t, filepath.Join(work, "cacheA"), filepath.Join(work, "mntA"), extraA...)
	cl := filepath.Join(a.dir, "clones", "lab")
	if out, err := shell(fmt.Sprintf(`set -e
head -c 5M /dev/urandom | dd of=%[1]s/disk.vmdk bs=4k seek=1234 conv=notrunc status=none
head -c 300k /dev/urandom | dd of=%[1]s/disk.vmdk bs=1 seek=90000000 conv=notrunc status=none
truncate -s 120M %[1]s/disk.vmdk
mkdir %[1]s/disk.vmdk.lck && echo lock > %[1]s/disk.vmdk.lck/M1.lck
echo log > %[1]s/vmware.log && mv %[1]s/vmware.log %[1]s/vmware-0.log
sync`, cl)); err != nil {
		t.Fatalf("writing on A: %v\n%s", err, out)
	}
	want := fileSum(t, filepath.Join(cl, "disk.vmdk"))
	a.unmount() // waits for the changes to reach the server
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"), extraB...)
	clB := filepath.Join(b.dir, "clones", "lab")
	if got := fileSum(t, filepath.Join(clB, "disk.vmdk")); got != want {
		t.Fatalf("B reads sha256 %s, A wrote %s", got, want)
	}
	for _, p := range []string{"disk.vmdk.lck/M1.lck", "vmware-0.log", "disk.vmx"} {
		if _, err := os.Stat(filepath.Join(clB, p)); err != nil {
			t.Errorf("B lacks %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(clB, "vmware.log")); err == nil {
		t.Error("B still has the renamed-away vmware.log")
	}
	t.Logf("sha256 on A and B: %s", want)
}

// A holds the clone; B gets it read-only with a clear message; a forced
// takeover on B makes A's next commit be refused, and A's changes survive
// as a conflict clone.
func TestLeaseTakeover(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	// A syncs at fsync only (and at unmount): what it wrote and fsynced
	// is exactly what each of its seals holds.
	a := s.startMount(t, filepath.Join(work, "cacheA"), filepath.Join(work, "mntA"), "--sync-interval", "1h")
	clA := filepath.Join(a.dir, "clones", "lab")
	if err := writeSync(filepath.Join(clA, "a.txt"), []byte("from-A\n")); err != nil {
		t.Fatalf("A writes: %v", err)
	}
	waitGeneration(t, s, "lab", 2)
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"))
	clB := filepath.Join(b.dir, "clones", "lab")
	out, err := shell("echo from-B > " + clB + "/b.txt")
	if err == nil || !strings.Contains(out, "Read-only") {
		t.Fatalf("B wrote a clone A holds: %v %s", err, out)
	}
	if !b.log.waitFor(5*time.Second, regexp.MustCompile(`leased to \S+ until`).MatchString) {
		t.Fatalf("B's log does not say who holds the clone:\n%s", b.log)
	}
	// A writes more while B has the clone read-only: B's view is behind.
	if err := writeSync(filepath.Join(clA, "a2.txt"), []byte("more-from-A\n")); err != nil {
		t.Fatalf("A writes: %v", err)
	}
	waitGeneration(t, s, "lab", 3)
	s.dvfs("clone", "takeover", "--cache", filepath.Join(work, "cacheB"), "lab")
	// B's first change reloads the clone at the latest generation (and
	// fails once, saying so); then B writes.
	var werr error
	for try := 0; try < 5; try++ {
		var out string
		if out, werr = shell("echo from-B > " + clB + "/b.txt && sync"); werr == nil {
			break
		} else {
			t.Logf("B's write after the takeover, try %d: %s", try, strings.TrimSpace(out))
		}
		time.Sleep(1500 * time.Millisecond) // the kernel forgets the old names
	}
	if werr != nil {
		t.Fatalf("B cannot write after the takeover:\n%s", b.log)
	}
	// A writes on, unaware, and fsyncs; its next commit is refused, and
	// what it fsynced becomes a conflict clone.
	late := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{'l'}).Read(late)
	if err := writeSync(filepath.Join(clA, "late.bin"), late); err != nil {
		t.Fatalf("A's late write (before its commit was refused): %v", err)
	}
	var conflict string
	deadline := time.Now().Add(30 * time.Second)
	for conflict == "" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		if m := regexp.MustCompile(`(?m)^(lab-conflict-\S+)`).FindStringSubmatch(s.dvfs("clone", "list")); m != nil {
			conflict = m[1]
		}
	}
	if conflict == "" {
		t.Fatalf("no conflict clone appeared; A's log:\n%s", a.log)
	}
	exp := filepath.Join(t.TempDir(), "conflict")
	s.dvfs("clone", "export", conflict, exp)
	if got, _ := os.ReadFile(filepath.Join(exp, "late.bin")); !bytes.Equal(got, late) {
		t.Fatalf("A's fsynced late write is not in the conflict clone %s (%d bytes)", conflict, len(got))
	}
	if out, err := shell("echo more > " + clA + "/again.txt"); err == nil {
		t.Fatalf("A still writes after losing the clone: %s", out)
	}
	b.unmount()
	exp2 := filepath.Join(t.TempDir(), "lab")
	s.dvfs("clone", "export", "lab", exp2)
	if got, _ := os.ReadFile(filepath.Join(exp2, "b.txt")); string(got) != "from-B\n" {
		t.Fatalf("B's write is not in the clone: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(exp2, "a2.txt")); string(got) != "more-from-A\n" {
		t.Fatalf("A's last commit before the takeover is not in the clone: %q", got)
	}
	t.Logf("A's refused changes were saved as %s", conflict)
}

// runWriter starts the record writer of the crash test on path and returns
// a function that waits for it and reports the last fsynced and the last
// started record.
func runWriter(t *testing.T, path string, start, end int, pace time.Duration, onSynced func(n int)) func() (synced, touched int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DVFS_E2E_WRITER="+path, "START="+strconv.Itoa(start), "END="+strconv.Itoa(end), "PACE="+pace.String())
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	synced, touched := start-1, start-1
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 0 && f[0] == "error" {
				t.Logf("writer: %s", sc.Text())
				continue
			}
			if len(f) != 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "wrote":
				touched = n
			case "synced":
				synced = n
				if onSynced != nil {
					onSynced(n)
				}
			}
		}
	}()
	return func() (int, int) { <-done; cmd.Wait(); return synced, touched }
}

// waitServerHas exports the clone's latest generation until it holds every
// record up to synced (the upload finishes by itself), or fails.
func waitServerHas(t *testing.T, s *serverProc, clone string, tmpl []byte, synced, touched int, within time.Duration, m *mountProc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		exp := filepath.Join(t.TempDir(), "exp")
		s.dvfs("clone", "export", clone, exp)
		got, _ := os.ReadFile(filepath.Join(exp, "disk.vmdk"))
		if firstBad(got, tmpl, synced, touched) < 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the server's latest generation still lacks fsynced record %d; history:\n%s\nmount log:\n%s", within,
				firstBad(got, tmpl, synced, touched), s.dvfs("clone", "history", clone), m.log)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firstBad returns the first fsynced record got lacks, or -1.
func firstBad(got, tmpl []byte, synced, touched int) int {
	if len(got) != len(tmpl) {
		return 0
	}
	for i := 0; i <= synced; i++ {
		off := i * recStride
		if !bytes.Equal(got[off:off+recLen(i)], recData(i)) {
			return i
		}
	}
	if rest := (touched + 1) * recStride; rest < len(tmpl) && !bytes.Equal(got[rest:], tmpl[rest:]) {
		return touched + 1
	}
	return -1
}

// SIGKILL the workstation during writes, again and again: after each
// restart the upload finishes by itself and the server's latest generation
// holds everything the workstation had fsynced.
func TestWorkstationKilledDuringWrites(t *testing.T) {
	// Most of its time is waiting (on an outage, restarts, scrapes): it
	// runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	s := startServer(t, t.TempDir())
	tmpl := publishBase(t, s, "lab")
	work := t.TempDir()
	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	rounds := 12 // each a random kill point; 20 took 4.5 minutes under stress-ng
	if testing.Short() {
		rounds = 4
	}
	next, synced, touched := 0, -1, -1
	const maxRecords = (96 << 20) / recStride
	for round := range rounds {
		m := s.startMount(t, cache, mnt, "--sync-interval", "1s")
		if round > 0 {
			// The restart finishes what the killed mount had fsynced.
			waitServerHas(t, s, "lab", tmpl, synced, touched, 60*time.Second, m)
		}
		if next >= maxRecords-40 {
			next = 0
		}
		start := next
		killAt := start + 16 + rand.IntN(24)
		wait := runWriter(t, filepath.Join(mnt, "clones", "lab", "disk.vmdk"), start, maxRecords, 0, func(n int) {
			if n >= killAt {
				m.cmd.Process.Signal(syscall.SIGKILL)
			}
		})
		synced, touched = wait()
		m.kill()
		if synced < start {
			t.Fatalf("round %d: nothing fsynced", round)
		}
		t.Logf("round %d: workstation killed after record %d was fsynced", round, synced)
		next = synced + 1
	}
	m := s.startMount(t, cache, mnt)
	waitServerHas(t, s, "lab", tmpl, synced, touched, 60*time.Second, m)
	m.unmount()
}

// The server is killed during a sync and stays down while a writer writes:
// the writer sees no error, and everything reaches the server afterwards.
func TestServerOutageDuringWrites(t *testing.T) {
	// Most of its time is waiting (on an outage, restarts, scrapes): it
	// runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	data := t.TempDir()
	addr := disktest.FreeAddr(t)
	s := startServerAt(t, data, addr)
	tmpl := publishBase(t, s, "lab")
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--sync-interval", "500ms")
	path := filepath.Join(m.dir, "clones", "lab", "disk.vmdk")
	// A clone opened on a workstation gets all its blocks in the
	// background: wait for that, as a VM that has been running would.
	os.Stat(path)
	deadline := time.Now().Add(time.Minute)
	for !regexp.MustCompile(`clone lab +100.0% cached`).MatchString(s.statusOf(t, m)) {
		if time.Now().After(deadline) {
			t.Fatalf("the clone's blocks never all arrived:\n%s", s.statusOf(t, m))
		}
		time.Sleep(200 * time.Millisecond)
	}
	outage := time.Minute
	if testing.Short() {
		outage = 10 * time.Second
	}
	// Pace the writer so that it writes throughout the outage.
	const records = 600
	killed := make(chan struct{})
	restarted := make(chan *serverProc, 1)
	wait := runWriter(t, path, 0, records, outage/(records-100), func(n int) {
		if n == 47 {
			s.stop(syscall.SIGKILL) // in the middle of syncs: every fsync starts one
			close(killed)
			go func() {
				time.Sleep(outage)
				restarted <- startServerAt(t, data, addr)
			}()
		}
	})
	synced, touched := wait()
	select {
	case <-killed:
	default:
		t.Fatal("the writer finished before the server was killed")
	}
	if synced != records-1 {
		t.Fatalf("the writer stopped at record %d of %d; mount log:\n%s", synced, records, m.log)
	}
	t.Logf("writer wrote and fsynced %d records while the server was down for %s, with no error", synced+1, outage)
	s2 := <-restarted
	waitServerHas(t, s2, "lab", tmpl, synced, touched, 2*time.Minute, m)
	m.unmount()
}

// statusOf returns what dvfs status says of a mount.
func (s *serverProc) statusOf(t *testing.T, m *mountProc) string {
	t.Helper()
	out, _ := s.try("status", m.dir)
	return out
}

// writeSync writes a file through a mount and fsyncs it (this process does
// not serve the mount, so it may do I/O on it).
func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitGeneration waits until the server's clone reaches generation gen.
func waitGeneration(t *testing.T, s *serverProc, clone string, gen int) {
	t.Helper()
	waitGenerationFor(t, s, clone, gen, 30*time.Second)
}

// waitGenerationFor is waitGeneration for at most d.
func waitGenerationFor(t *testing.T, s *serverProc, clone string, gen int, d time.Duration) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(clone) + `\s+\S+\s+(\d+)`)
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(s.dvfs("clone", "list")); m != nil {
			if n, _ := strconv.Atoi(m[1]); n >= gen {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("clone %s never reached generation %d:\n%s", clone, gen, s.dvfs("clone", "list"))
}

// uploadedRE finds what each committed generation uploaded.
var uploadedRE = regexp.MustCompile(`msg="clone generation committed" clone=lab generation=\d+ uploaded_bytes=(\d+)`)

// sealedRE finds how many blocks each seal kept as their sectors alone.
var sealedRE = regexp.MustCompile(`msg="clone sealed" clone=lab .*new_blocks=(\d+) as_sectors=(\d+)`)

// Scattered 4 KiB writes into a clone travel as the sectors written, not
// as whole 64 KiB blocks: the first seal against the template's blocks,
// the next against the blocks of the generation before; a second
// workstation reads exactly what was written. The template is in the
// cache first, so the first seal also hashes and keeps only the sectors
// written (the cache's sector chaining values), and the second those of
// the blocks written again (the chaining values the first seal kept).
func TestSmallWritesTravelAsDeltas(t *testing.T) {
	s := startServer(t, t.TempDir())
	tmpl := publishBase(t, s, "lab")
	work := t.TempDir()
	// No multicast and no background fill: the cache holds what is read.
	a := s.startMount(t, filepath.Join(work, "cacheA"), filepath.Join(work, "mntA"), "--sync-interval", "1h", "--log-level", "debug", "--multicast=false", "--fill-rate", "0")
	disk := filepath.Join(a.dir, "clones", "lab", "disk.vmdk")
	if out, err := shell("cat " + disk + " >/dev/null"); err != nil {
		t.Fatalf("reading the clone through: %v\n%s", err, out)
	}
	r := rand.New(rand.NewPCG(4, 4))
	sectors := int64(len(tmpl) / 4096)
	var first []int64
	written := 0
	for round := range 2 {
		var sc strings.Builder
		sc.WriteString("set -e\n")
		for i := range 256 {
			sec := r.Int64N(sectors)
			if round == 1 && i%2 == 0 {
				sec = first[i]/16*16 + (first[i]+1+r.Int64N(15))%16 // another sector of a block written before
			}
			first = append(first, sec)
			fmt.Fprintf(&sc, "dd if=/dev/urandom of=%s bs=4k count=1 seek=%d conv=notrunc status=none\n", disk, sec)
			written += 4096
		}
		sc.WriteString("sync " + disk + "\n")
		if out, err := shell(sc.String()); err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
		waitGeneration(t, s, "lab", 2+round)
	}
	want := fileSum(t, disk)
	a.unmount()
	uploaded := 0
	for _, m := range uploadedRE.FindAllStringSubmatch(a.log.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		uploaded += n
	}
	t.Logf("guest wrote %d bytes in 512 writes of 4 KiB; the workstation uploaded %d bytes of blocks (%.2fx)", written, uploaded, float64(uploaded)/float64(written))
	if uploaded == 0 || uploaded > written*13/10 {
		t.Fatalf("uploaded %d bytes for %d written: want at most 1.3x\n%s", uploaded, written, a.log)
	}
	if strings.Contains(a.log.String(), "refused a delta") {
		t.Fatalf("the server refused a delta:\n%s", a.log)
	}
	var seals [][2]int
	for _, m := range sealedRE.FindAllStringSubmatch(a.log.String(), -1) {
		nb, _ := strconv.Atoi(m[1])
		ns, _ := strconv.Atoi(m[2])
		if nb > 0 {
			seals = append(seals, [2]int{nb, ns})
		}
	}
	t.Logf("seals (new blocks, of them as sectors alone): %v", seals)
	if len(seals) < 2 {
		t.Fatalf("%d seals with new blocks logged, want 2:\n%s", len(seals), a.log)
	}
	for i, sl := range seals {
		if sl[1] != sl[0] {
			t.Fatalf("seal %d: %d of %d blocks as sectors alone; want all", i+1, sl[1], sl[0])
		}
	}
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"))
	if got := fileSum(t, filepath.Join(b.dir, "clones", "lab", "disk.vmdk")); got != want {
		t.Fatalf("B reads sha256 %s, A wrote %s", got, want)
	}
}
