//go:build linux

package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

// benchWriteback measures the writeback of clone changes:
//   - latency from a write being fsynced on the workstation to its being in a
//     generation committed on the server, under a steady load of 64 KiB
//     writes each followed by fsync (p50, p99);
//   - sync throughput: a clone's -size of fresh changes pushed to the server
//     at unmount, against a plain HTTP upload of the same number of bytes to
//     a sink on loopback, in the same run.
func benchWriteback(args []string) error {
	fl := flag.NewFlagSet("writeback", flag.ExitOnError)
	sizeStr := fl.String("size", "1GiB", "changes pushed in the throughput run")
	rate := fl.Int("rate", 20, "writes per second in the latency run (64 KiB each, each fsynced)")
	dur := fl.Duration("duration", 20*time.Second, "length of the latency run")
	interval := fl.Duration("sync-interval", 5*time.Second, "the mount's --sync-interval")
	dir := fl.String("dir", "/var/tmp", "scratch directory")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	work, bin, cleanup, err := workspace(*dir, "wb")
	if err != nil {
		return err
	}
	defer cleanup()
	tpl := filepath.Join(work, "tpl")
	os.Mkdir(tpl, 0o755)
	if err := writeRandom(filepath.Join(tpl, "disk.vmdk"), int64(size)); err != nil {
		return err
	}
	srv, err := startServer(bin, filepath.Join(work, "server"))
	if err != nil {
		return err
	}
	defer srv.stop()
	env := []string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}
	for _, a := range [][]string{{"template", "publish", "--name", "wb", tpl}, {"clone", "create", "--template", "wb", "lat"}, {"clone", "create", "--template", "wb", "thr"}} {
		if _, out, err := run(env, bin, a...); err != nil {
			return fmt.Errorf("%v: %v\n%s", a, err, out)
		}
	}

	// Latency under a steady fsync load.
	mnt := filepath.Join(work, "mnt")
	os.Mkdir(mnt, 0o755)
	logPath := filepath.Join(work, "mount.log")
	dv, err := startLoggedMount(env, bin, logPath, mnt, "--cache", filepath.Join(work, "cache"), "--log-level", "debug", "--sync-interval", interval.String())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(mnt, "clones", "lat", "disk.vmdk"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var synced []time.Time
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	end := time.Now().Add(*dur)
	for i := 0; time.Now().Before(end); i++ {
		<-tick.C
		copy(buf, fmt.Sprintf("write %d at %s", i, time.Now()))
		if _, err := f.WriteAt(buf, int64(i%int(int64(size)/int64(len(buf))))*int64(len(buf))); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		synced = append(synced, time.Now())
	}
	tick.Stop()
	f.Close()
	time.Sleep(*interval + 5*time.Second) // let the last generations land
	dv.stop()
	seals, commits, err := sealCommitTimes(logPath, "lat")
	if err != nil {
		return err
	}
	var lat []time.Duration
	for _, t := range synced {
		// The first seal that began after the fsync returned holds the
		// write; the commit that follows it makes it durable on the server.
		i, _ := slices.BinarySearchFunc(seals, t, func(a, b time.Time) int { return a.Compare(b) })
		if i < len(seals) && i < len(commits) {
			lat = append(lat, commits[i].Sub(t))
		}
	}
	if len(lat) == 0 {
		return fmt.Errorf("no generation committed during the latency run (see %s)", logPath)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("write -> durable on the server, %d x 64 KiB writes/s, each fsynced, for %s (%d writes, %d generations):\n",
		*rate, *dur, len(synced), len(commits))
	fmt.Printf("  p50 %s   p99 %s   max %s\n", pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))

	// Throughput: size of changes, synced at unmount, vs a plain upload.
	mnt2 := filepath.Join(work, "mnt2")
	os.Mkdir(mnt2, 0o755)
	dv2, err := startLoggedMount(env, bin, filepath.Join(work, "mount2.log"), mnt2, "--cache", filepath.Join(work, "cache2"), "--sync-interval", "1h")
	if err != nil {
		return err
	}
	target := filepath.Join(mnt2, "clones", "thr", "disk.vmdk")
	if _, out, err := run(nil, "sh", "-c", fmt.Sprintf("head -c %d /dev/urandom > %s.new && dd if=%s.new of=%q bs=1M conv=notrunc status=none && rm %s.new", size, work+"/chg", work+"/chg", target, work+"/chg")); err != nil {
		return fmt.Errorf("writing changes: %v %s", err, out)
	}
	// The first write took the lease; the long interval keeps the changes
	// local until the unmount pushes them.
	start := time.Now()
	if _, out, err := run(env, bin, "umount", mnt2); err != nil {
		return fmt.Errorf("umount: %v %s", err, out)
	}
	dv2.cmd.Wait()
	syncTime := time.Since(start)
	plain, err := plainUpload(int64(size))
	if err != nil {
		return err
	}
	fmt.Printf("sync of %s of changes at unmount: %s (%.0f MiB/s); plain HTTP upload of the same bytes: %s (%.0f MiB/s); ratio %.2f\n",
		humanize.IBytes(size), syncTime.Round(time.Millisecond), mib(int64(size), syncTime),
		plain.Round(time.Millisecond), mib(int64(size), plain), plain.Seconds()/syncTime.Seconds())
	return nil
}

// startLoggedMount starts a mount whose log goes to a file.
func startLoggedMount(env []string, bin, logPath, mnt string, args ...string) (*daemon, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(append([]string{"mount"}, args...), mnt)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for range 300 {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("msg=mounted")) {
			return &daemon{cmd: cmd, dir: mnt}, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	return nil, fmt.Errorf("mount did not come up (log %s)", logPath)
}

var (
	sealRE   = regexp.MustCompile(`msg="clone sealed" clone=(\S+) sealed_at=(\d+) new_blocks=(\d+)`)
	commitRE = regexp.MustCompile(`msg="clone generation committed" clone=(\S+) generation=\d+ committed_at=(\d+)`)
)

// sealCommitTimes pairs each seal that led to a commit with that commit.
func sealCommitTimes(logPath, clone string) (seals, commits []time.Time, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var lastSeal time.Time
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := sealRE.FindStringSubmatch(sc.Text()); m != nil && m[1] == clone {
			ns, _ := strconv.ParseInt(m[2], 10, 64)
			lastSeal = time.Unix(0, ns)
		}
		if m := commitRE.FindStringSubmatch(sc.Text()); m != nil && m[1] == clone && !lastSeal.IsZero() {
			ns, _ := strconv.ParseInt(m[2], 10, 64)
			seals, commits = append(seals, lastSeal), append(commits, time.Unix(0, ns))
		}
	}
	return seals, commits, sc.Err()
}

// plainUpload times an HTTP POST of n random bytes to a sink on loopback.
func plainUpload(n int64) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var got int64
	var mu sync.Mutex
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, _ := io.Copy(io.Discard, r.Body)
		mu.Lock()
		got += k
		mu.Unlock()
	}))
	body := make([]byte, 16<<20)
	start := time.Now()
	for sent := int64(0); sent < n; sent += int64(len(body)) {
		k := min(int64(len(body)), n-sent)
		resp, err := http.Post("http://"+ln.Addr().String(), "application/octet-stream", bytes.NewReader(body[:k]))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
	}
	return time.Since(start), nil
}
