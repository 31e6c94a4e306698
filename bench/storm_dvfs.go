//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

const stormGroup = "239.78.9.1:7421"

// runDvfs: `dvfs serve` in the server's namespace, a `dvfs mount` with
// its own cache in each workstation's, one clone per workstation. Warm:
// the template is pushed by multicast into every cache first (`dvfs
// template push`, timed); cold: the caches start empty. Each
// workstation's workload runs against its clone on its mount; then `dvfs
// umount` returns once its changes are on the server. The final disks
// are checked from the server: `dvfs clone export`.
func (s *storm) runDvfs(ctx context.Context, r *stormRow, dir string, warm bool) error {
	n := r.N
	data := filepath.Join(dir, "server")
	listen := s.tn.addr(0).String() + ":7420"
	// The server is set up for its link as the README advises: multicast
	// at the link's rate, background fills at an eighth of it.
	rate, err := parseRate(s.rate)
	if err != nil {
		return err
	}
	srv, err := startBG(s.nsCmd(0, nil, s.bin, "serve", "--data", data, "--listen", listen,
		"--multicast-group", stormGroup, "--multicast-iface", "eth0", "--multicast-rate", s.rate,
		"--background-rate", strconv.FormatInt(rate/8, 10),
		"--multicast-on-publish=false", "--multicast-receivers", strconv.Itoa(n)), filepath.Join(dir, "server.log"))
	if err != nil {
		return err
	}
	stopSrv := s.atExit(func() { srv.stop(30 * time.Second) })
	if !waitFor(ctx, 30*time.Second, func() bool { return servingLine.MatchString(srv.log()) }) {
		return fmt.Errorf("dvfs serve did not start:\n%s", tail([]byte(srv.log()), 2000))
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		return err
	}
	env := []string{"DVFS_TOKEN=" + strings.TrimSpace(string(tok))}
	// --compress yes: blocks arrive compressed, so the server does not
	// compress them in the background while the workloads run (which
	// would count as server disk written).
	if _, err := s.nsRun(0, env, s.bin, "template", "publish", "--compress", "yes", "--name", "storm", filepath.Dir(s.template)); err != nil {
		return err
	}
	for i := range n {
		if _, err := s.nsRun(0, env, s.bin, "clone", "create", "--template", "storm", fmt.Sprintf("ws%d", i+1)); err != nil {
			return err
		}
	}
	// The mounts, one per workstation namespace. Warm: the caches are
	// filled through a first set of mounts, which then unmount, and the
	// workloads run on fresh mounts over the full caches, as on a lab
	// workstation whose cache was filled before its user logged in; the
	// mounts' CPU (and -cpuprofile) then covers the workload, its sync
	// and the unmount, not the fill.
	mnts := make([]string, n)
	for i := range n {
		mnts[i] = filepath.Join(dir, fmt.Sprintf("ws%d", i+1), "mnt")
		os.MkdirAll(mnts[i], 0o755)
	}
	if warm {
		fillers, err := s.startMounts(ctx, dir, env, mnts, "fill", true, false)
		if err != nil {
			return err
		}
		if err := s.fill(ctx, r, env, mnts); err != nil {
			return err
		}
		for i, m := range fillers {
			if _, err := s.nsRun(i+1, env, s.bin, "umount", mnts[i]); err != nil {
				return fmt.Errorf("workstation %d: unmounting after the fill: %w", i+1, err)
			}
			m.wait(2 * time.Minute)
		}
	}
	mounts, err := s.startMounts(ctx, dir, env, mnts, "mount", warm, s.profile != "")
	if err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	// The mounts' CPU from here on counts (not the fill's).
	mcpu0 := make([]float64, n)
	for i, m := range mounts {
		mcpu0[i] = procCPU(m.cmd.Process.Pid)
	}
	tree := watchTree(srv.cmd.Process.Pid)
	defer tree.end()
	cpu0, wb0 := tree.totals()
	links := s.measure(r)
	mcpuWork := make([]float64, n)
	var umu sync.Mutex
	umountErrs := map[int]error{}
	umountAt := map[int]time.Time{}
	startAt, wks, wg := s.startWorkers(n, func(i int) []string {
		return []string{"-mode", "file", "-path", filepath.Join(mnts[i], "clones", fmt.Sprintf("ws%d", i+1), "disk.img")}
	}, func(wk *worker) {
		// As each workstation's workload ends, it unmounts: dvfs umount
		// returns once the clone's changes are on the server.
		mcpuWork[wk.i] = procCPU(mounts[wk.i].cmd.Process.Pid) - mcpu0[wk.i]
		_, err := s.nsRun(wk.i+1, env, s.bin, "umount", mnts[wk.i])
		mounts[wk.i].wait(2 * time.Minute)
		umu.Lock()
		umountErrs[wk.i], umountAt[wk.i] = err, time.Now()
		umu.Unlock()
	})
	wg.Wait()
	links()
	r.collect(startAt, wks)
	for i := range n {
		if err := umountErrs[i]; err != nil {
			r.errorf("workstation %d: %v", i+1, err)
		}
		if wks[i].err == nil {
			r.Durable[i] = umountAt[i].Sub(startAt).Seconds()
		}
		r.WSCPU[i] += mounts[i].cpu() - mcpu0[i] // the mount daemon's
		r.WSCPUWork[i] += mcpuWork[i]
	}
	cpu1, wb1 := tree.totals()
	r.SrvCPU, r.DiskW = cpu1-cpu0, wb1-wb0
	// The server's copy of every clone, against the expected bytes.
	for i := range n {
		out := filepath.Join(dir, fmt.Sprintf("export%d", i+1))
		if _, err := s.nsRun(0, env, s.bin, "clone", "export", fmt.Sprintf("ws%d", i+1), out); err != nil {
			r.errorf("workstation %d: %v", i+1, err)
			continue
		}
		s.check(r, i, filepath.Join(out, "disk.img"))
	}
	stopSrv()
	return ctx.Err()
}

var fillRE = regexp.MustCompile(`template storm(?:@\d+)?\s+\S+% cached \((\d+) of (\d+) blocks\)`)

// startMounts starts a dvfs mount in each workstation's namespace, its
// log in wsI.NAME.log, and waits until every one is up. multicast joins
// the template's sessions; profile writes each mount's CPU profile.
func (s *storm) startMounts(ctx context.Context, dir string, env, mnts []string, name string, multicast, profile bool) ([]*bg, error) {
	mounts := make([]*bg, len(mnts))
	for i, mnt := range mnts {
		args := []string{"mount", "--cache", filepath.Join(dir, fmt.Sprintf("ws%d", i+1), "cache"), "--multicast-iface", "eth0"}
		if !multicast {
			args = append(args, "--multicast=false")
		}
		if profile {
			args = append(args, "--cpuprofile", fmt.Sprintf("%s.%d.ws%d", s.profile, s.run, i+1))
		}
		m, err := s.startMountDaemon(ctx, i, mnt, filepath.Join(dir, fmt.Sprintf("ws%d.%s.log", i+1, name)), "dvfs mount", env, append(args, mnt)...)
		if err != nil {
			return nil, err
		}
		mounts[i] = m
	}
	return mounts, nil
}

// startMountDaemon starts `dvfs args...`, a FUSE daemon mounting mnt, in
// workstation i's namespace with its log in logPath, and waits until it
// logs that it mounted; at exit it is stopped and mnt detached.
func (s *storm) startMountDaemon(ctx context.Context, i int, mnt, logPath, what string, env []string, args ...string) (*bg, error) {
	m, err := startBG(s.nsCmd(i+1, env, s.bin, args...), logPath)
	if err != nil {
		return nil, err
	}
	s.atExit(func() {
		select {
		case <-m.done:
		default:
			m.stop(30 * time.Second)
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	if !waitFor(ctx, 60*time.Second, func() bool { return strings.Contains(m.log(), "msg=mounted") }) {
		return nil, fmt.Errorf("workstation %d: %s did not come up:\n%s", i+1, what, tail([]byte(m.log()), 2000))
	}
	return m, nil
}

// fill pushes the template to every mount by multicast and waits until
// every cache holds it. If multicast does not fill them, every
// workstation reads the template through its mount instead, and the
// row says so.
func (s *storm) fill(ctx context.Context, r *stormRow, env []string, mnts []string) error {
	// cached returns the template blocks mnt's cache holds, and whether
	// that is all of them.
	cached := func(mnt string) (int64, bool) {
		out, err := s.nsRun(0, env, s.bin, "status", mnt)
		if err != nil {
			return 0, false
		}
		m := fillRE.FindStringSubmatch(out)
		if m == nil {
			return 0, false
		}
		n, _ := strconv.ParseInt(m[1], 10, 64)
		return n, m[1] == m[2]
	}
	rx0, tx0 := s.linkBytes()
	start := time.Now()
	if _, err := s.nsRun(0, env, s.bin, "template", "push", "storm"); err != nil {
		return err
	}
	rate, _ := parseRate(s.rate)
	// The push may take longer than the link needs: with many receivers
	// on this machine's two cores it is their CPU that bounds it. So it
	// is given up only when no cache gained a block for this long.
	timeout := 30*time.Second + 3*time.Duration(float64(s.w.Size)/float64(rate)*float64(time.Second))
	var progress int64 = -1
	lastGain := time.Now()
	allFull := func() bool {
		for i, m := range mnts {
			n, full := cached(m)
			if full {
				continue
			}
			if p := int64(i)<<40 + n; p > progress {
				progress, lastGain = p, time.Now()
			}
			return false
		}
		return true
	}
	ok := false
	for ctx.Err() == nil && time.Since(lastGain) <= timeout {
		if ok = allFull(); ok {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		st, _ := s.nsRun(0, env, s.bin, "status", mnts[0])
		r.Note = "multicast fill failed, caches filled by reading the template through each mount"
		fmt.Printf("  multicast fill made no progress for %s (%s); reading the template through instead\n", timeout, strings.TrimSpace(st))
		var wg sync.WaitGroup
		errs := make([]error, len(mnts))
		for i, m := range mnts {
			wg.Go(func() {
				_, errs[i] = s.nsRun(i+1, nil, "dd", "if="+filepath.Join(m, "templates", "storm", "disk.img"), "of=/dev/null", "bs=1M", "status=none")
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	}
	r.Fill = time.Since(start).Seconds()
	rx1, tx1 := s.linkBytes()
	r.FillTo = tx1 - tx0
	_ = rx1 - rx0
	if ok {
		r.Note = fmt.Sprintf("caches filled by one multicast push: %.2fs, %s sent", r.Fill, humanize.IBytes(uint64(r.FillTo)))
	}
	return nil
}
