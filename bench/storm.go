//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

// benchStorm is the restore storm (issue 20; thesis slides 42-54): N
// workstations start their VMs at once, each from its own linked clone of
// one template, against a server whose link is shaped (default 1 Gbit/s)
// in both directions. Targets, one after the other on the same network,
// template and workload:
//
//	local      the clone on the workstation's local disk (the floor)
//	dvfs       dvfs mount per workstation, template in every cache (one multicast push)
//	dvfs-cold  dvfs mount per workstation, empty caches
//	smb        the clone file on Samba, the workload over SMB2/3 (go-smb2)
//	copy       cache-and-update: download the clone over SMB, run locally, upload it
//	rclone     rclone mount of the share, --vfs-cache-mode full
func benchStorm(args []string) error {
	fl := flag.NewFlagSet("storm", flag.ExitOnError)
	counts := fl.String("n", "1,4", "workstation counts")
	sizeStr := fl.String("size", "1GiB", "template disk size")
	readStr := fl.String("read", "128MiB", "bytes each workstation reads (runs of 64 KiB-1 MiB requests)")
	writeStr := fl.String("write", "16MiB", "bytes each workstation writes (4 KiB requests)")
	locality := fl.Bool("locality", false, "writes cluster (a journal and hot regions) as real guests' do; default uniform")
	targetsStr := fl.String("targets", "local,fuse,dvfs,dvfs-cold,smb,copy,rclone", "targets to run")
	ratesStr := fl.String("rates", "1gbit", "tbf rates of the server's link (each direction), comma-separated")
	seed := fl.Uint64("seed", 1, "template and workload seed (workstation i uses seed+i)")
	dir := fl.String("dir", "/var/tmp", "scratch directory")
	out := fl.String("out", "", "write storm.txt, storm.json, storm.csv and SVG plots into this directory")
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile (pprof) of each dvfs mount to FILE.N.wsI (run N, workstation I)")
	smoke := fl.Bool("smoke", false, "CI: N=2, a 64 MiB disk, 16 MiB read and 2 MiB written per workstation, every target; fails on any wrong digest or error")
	fl.Parse(args)
	if *smoke {
		*counts, *sizeStr, *readStr, *writeStr = "2", "64MiB", "16MiB", "2MiB"
	}
	var ns []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 200 {
			return fmt.Errorf("bad workstation count %q", s)
		}
		ns = append(ns, n)
	}
	var w stormWork
	for _, p := range []struct {
		s string
		v *int64
	}{{*sizeStr, &w.Size}, {*readStr, &w.Read}, {*writeStr, &w.Write}} {
		v, err := humanize.ParseBytes(p.s)
		if err != nil {
			return err
		}
		*p.v = int64(v)
	}
	w.Size = w.Size / (1 << 20) * (1 << 20)
	if w.Size < 4<<20 {
		return errors.New("-size: at least 4 MiB")
	}
	w.Locality = *locality
	targets := strings.Split(*targetsStr, ",")
	for _, t := range targets {
		if !slices.Contains(stormTargets, t) {
			return fmt.Errorf("unknown target %q (have %s)", t, strings.Join(stormTargets, ","))
		}
	}
	rates := strings.Split(*ratesStr, ",")
	for _, r := range rates {
		if _, err := parseRate(r); err != nil {
			return err
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("storm needs root (network namespaces, FUSE, Samba)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp(*dir, "dvfs-bench-storm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	sb := &storm{work: work, w: w, seed: *seed, digests: map[int]string{}, profile: *cpuprofile}
	defer sb.cleanup()
	if sb.bin, err = buildDvfs(work); err != nil {
		return err
	}
	if sb.self, err = os.Executable(); err != nil {
		return err
	}
	tplDir := filepath.Join(work, "tpl")
	os.Mkdir(tplDir, 0o755)
	sb.template = filepath.Join(tplDir, "disk.img")
	fmt.Printf("template: %s VM-disk-like image; per workstation %s read, %s written (locality %v)\n",
		humanize.IBytes(uint64(w.Size)), humanize.IBytes(uint64(w.Read)), humanize.IBytes(uint64(w.Write)), w.Locality)
	if err := writeVMImage(sb.template, w.Size, *seed); err != nil {
		return err
	}
	maxN := slices.Max(ns)
	for i := range maxN {
		if sb.digests[i], err = sb.work1(i).expectedDigest(sb.template); err != nil {
			return err
		}
	}
	tn, err := newTestNet(maxN + 1)
	if err != nil {
		return err
	}
	defer tn.close()
	sb.tn = tn
	sb.env = []string{"DVFS_SERVER=http://" + tn.addr(0).String() + ":7420"}

	var rows []*stormRow
	failed := 0
	for _, rate := range rates {
		shape, err := tn.shapeBoth(0, rate)
		if err != nil {
			return err
		}
		sb.rate = rate
		fmt.Printf("network: server in %s, workstations in %s-1..%d; the server's link shaped both ways:\n  %s\n",
			tn.nodes[0], tn.prefix, maxN, strings.Join(shape, "\n  "))
		for _, n := range ns {
			for _, t := range targets {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := sb.runTarget(ctx, t, n)
				r.print()
				if r.failed() {
					failed++
				}
				rows = append(rows, r)
			}
		}
	}
	rep := stormReport{Machine: machineInfo(), Command: "go run ./bench storm " + strings.Join(args, " "), Work: w, Rows: rows}
	txt := rep.table()
	fmt.Print("\n" + txt)
	if *out != "" {
		if err := rep.write(*out); err != nil {
			return err
		}
		fmt.Printf("wrote %s/storm.{txt,json,csv} and plots\n", *out)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d runs had errors or wrong digests", failed, len(rows))
	}
	return nil
}

var stormTargets = []string{"local", "fuse", "passthrough", "dvfs", "dvfs-cold", "smb", "copy", "rclone"}

// storm is one run's shared state.
type storm struct {
	work     string
	bin      string // dvfs
	self     string // this binary, for storm-work
	template string
	w        stormWork
	seed     uint64
	digests  map[int]string // expected, by workstation index
	tn       *testNet
	env      []string // DVFS_SERVER (and DVFS_TOKEN, per server)
	rate     string
	run      int    // a counter for run directories
	profile  string // -cpuprofile: prefix of the mounts' CPU profiles

	mu       sync.Mutex
	cleanups []func() // undo what is still set up (mounts, daemons), last first
}

// atExit registers an undo step; it returns a function that runs it now
// (once) instead.
func (s *storm) atExit(fn func()) func() {
	var once sync.Once
	f := func() { once.Do(fn) }
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
	return f
}

func (s *storm) cleanup() {
	s.mu.Lock()
	c := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

// work1 is workstation i's workload.
func (s *storm) work1(i int) stormWork {
	w := s.w
	w.Seed = s.seed + uint64(i)
	return w
}

// stormRow is one target at one N.
type stormRow struct {
	Target  string    `json:"target"`
	Rate    string    `json:"rate"`
	N       int       `json:"n"`
	Work    []float64 `json:"work_s"`    // per workstation: start to workload done (fsync returned)
	Durable []float64 `json:"durable_s"` // per workstation: start to changes on the server
	ToWS    int64     `json:"bytes_to_workstations"`
	FromWS  int64     `json:"bytes_from_workstations"`
	DiskW   int64     `json:"server_disk_write_bytes"`
	SrvCPU  float64   `json:"server_cpu_s"`
	WSCPU   []float64 `json:"workstation_cpu_s"` // per workstation: workload process + its mount daemon
	// WSCPUWork is each workstation's CPU until its workload completed
	// (for dvfs: before the sync that unmounting waits for).
	WSCPUWork []float64 `json:"workstation_cpu_work_s"`
	ReadP50   float64   `json:"read_p50_ms"`
	ReadP99   float64   `json:"read_p99_ms"`
	WriteP50  float64   `json:"write_p50_ms"`
	WriteP99  float64   `json:"write_p99_ms"`
	SyncMax   float64   `json:"fsync_max_ms"`
	DigestOK  int       `json:"digests_ok"`
	Errors    []string  `json:"errors,omitempty"`
	Fill      float64   `json:"fill_s,omitempty"`     // dvfs: the multicast push until every cache held the template
	FillTo    int64     `json:"fill_bytes,omitempty"` // bytes the server sent during it
	Note      string    `json:"note,omitempty"`
	reads     []int64
	writes    []int64
}

func (r *stormRow) errorf(format string, a ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, a...))
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func pctNS(v []int64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return float64(v[min(len(v)-1, int(p*float64(len(v))))]) / 1e6
}

func (r *stormRow) print() {
	fmt.Printf("%-9s %-7s N=%-3d work p50 %.2fs max %.2fs; durable max %.2fs; link to ws %s from ws %s; server disk %s, CPU %.2fs; ws CPU mean %.2fs; read p50/p99 %.2f/%.1f ms write %.3f/%.1f ms; digests %d/%d",
		r.Target, r.Rate, r.N, pct(r.Work, 0.5), pct(r.Work, 1), pct(r.Durable, 1), humanize.IBytes(uint64(r.ToWS)), humanize.IBytes(uint64(r.FromWS)),
		humanize.IBytes(uint64(r.DiskW)), r.SrvCPU, mean(r.WSCPU), r.ReadP50, r.ReadP99, r.WriteP50, r.WriteP99, r.DigestOK, r.N)
	if r.Fill > 0 {
		fmt.Printf("; fill %.2fs %s", r.Fill, humanize.IBytes(uint64(r.FillTo)))
	}
	if r.Note != "" {
		fmt.Printf("; %s", r.Note)
	}
	fmt.Println()
	for _, e := range r.Errors {
		fmt.Printf("  ERROR: %s\n", e)
	}
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// runTarget runs one target with n workstations and measures it.
func (s *storm) runTarget(ctx context.Context, target string, n int) *stormRow {
	s.run++
	r := &stormRow{Target: target, Rate: s.rate, N: n, Work: make([]float64, n), Durable: make([]float64, n), WSCPU: make([]float64, n), WSCPUWork: make([]float64, n)}
	dir := filepath.Join(s.work, fmt.Sprintf("run%d-%s-%d", s.run, target, n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.errorf("%v", err)
		return r
	}
	defer os.RemoveAll(dir)
	defer s.cleanup() // whatever the target left up
	var err error
	switch target {
	case "local":
		err = s.runLocal(ctx, r, dir)
	case "fuse", "passthrough":
		err = s.runFuseLoopback(ctx, r, dir, target == "passthrough")
	case "dvfs", "dvfs-cold":
		err = s.runDvfs(ctx, r, dir, target == "dvfs")
	case "smb", "copy", "rclone":
		err = s.runSMB(ctx, r, dir, target)
	}
	if err != nil {
		r.errorf("%v", err)
	}
	slices.Sort(r.reads)
	slices.Sort(r.writes)
	r.ReadP50, r.ReadP99 = pctNS(r.reads, 0.5), pctNS(r.reads, 0.99)
	r.WriteP50, r.WriteP99 = pctNS(r.writes, 0.5), pctNS(r.writes, 0.99)
	return r
}

// nsCmd is a command in workstation (or server, 0) node i's network
// namespace. nsenter enters only the network namespace (ip netns exec
// would also make a mount namespace, hiding FUSE mounts from the rest)
// and execs the command: its pid is the command's.
func (s *storm) nsCmd(node int, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + s.tn.nodes[node], "--", name}, args...)...)
	cmd.Env = append(append(os.Environ(), s.env...), env...)
	return cmd
}

// nsRun runs a command in node's namespace and returns its output.
func (s *storm) nsRun(node int, env []string, name string, args ...string) (string, error) {
	out, err := s.nsCmd(node, env, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return string(out), nil
}

// worker is a running storm-work process.
type worker struct {
	i    int
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
	res  workResult
	cpu  float64
	err  error
}

// startWorkers starts workstation 1..n's workload processes, each in its
// namespace, all to begin at the same moment; extra gives each one's
// arguments. done is called as each ends.
func (s *storm) startWorkers(n int, extra func(i int) []string, done func(wk *worker)) (time.Time, []*worker, *sync.WaitGroup) {
	startAt := time.Now().Add(500*time.Millisecond + time.Duration(n)*50*time.Millisecond)
	var wg sync.WaitGroup
	var wks []*worker
	for i := range n {
		w := s.work1(i)
		args := append([]string{"storm-work", "-start-at", strconv.FormatInt(startAt.UnixNano(), 10),
			"-seed", strconv.FormatUint(w.Seed, 10), "-size", strconv.FormatInt(w.Size, 10),
			"-read", strconv.FormatInt(w.Read, 10), "-write", strconv.FormatInt(w.Write, 10),
			"-locality=" + strconv.FormatBool(w.Locality)}, extra(i)...)
		wk := &worker{i: i, cmd: s.nsCmd(i+1, nil, s.self, args...)}
		wk.cmd.Stdout, wk.cmd.Stderr = &wk.out, &wk.errb
		wks = append(wks, wk)
		if err := wk.cmd.Start(); err != nil {
			wk.err = err
			continue
		}
		s.atExit(func() { wk.cmd.Process.Kill() }) // a no-op once it has been waited for
		wg.Go(func() {
			err := wk.cmd.Wait()
			if ru, ok := wk.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				wk.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			}
			if err != nil {
				wk.err = fmt.Errorf("workstation %d: %v: %s", i+1, err, tail(wk.errb.Bytes(), 1500))
			} else if err := json.Unmarshal(wk.out.Bytes(), &wk.res); err != nil {
				wk.err = fmt.Errorf("workstation %d: %v: %q", i+1, err, tail(wk.out.Bytes(), 300))
			}
			done(wk)
		})
	}
	return startAt, wks, &wg
}

// collect puts the workers' results into the row.
func (r *stormRow) collect(startAt time.Time, wks []*worker) {
	for _, wk := range wks {
		if wk.err != nil {
			r.errorf("%v", wk.err)
			continue
		}
		r.Work[wk.i] = time.Unix(0, wk.res.Done).Sub(startAt).Seconds()
		r.Durable[wk.i] = time.Unix(0, wk.res.Durable).Sub(startAt).Seconds()
		r.WSCPU[wk.i] += wk.cpu
		r.WSCPUWork[wk.i] += wk.cpu
		r.reads = append(r.reads, wk.res.Read...)
		r.writes = append(r.writes, wk.res.Write...)
		r.SyncMax = max(r.SyncMax, float64(wk.res.Sync)/1e6)
	}
}

// check compares workstation i's final disk with the expected bytes.
func (s *storm) check(r *stormRow, i int, path string) {
	d, n, err := fileDigest(path)
	switch {
	case err != nil:
		r.errorf("workstation %d digest: %v", i+1, err)
	case n != s.w.Size:
		r.errorf("workstation %d: final disk %d bytes, want %d", i+1, n, s.w.Size)
	case d != s.digests[i]:
		r.errorf("workstation %d: final disk's digest %s, want %s", i+1, d[:16], s.digests[i][:16])
	default:
		r.DigestOK++
	}
}

// linkBytes returns what the server's eth0 received (from workstations)
// and sent (to them).
func (s *storm) linkBytes() (rx, tx int64) {
	out, err := exec.Command("ip", "-n", s.tn.nodes[0], "-s", "-j", "link", "show", "dev", "eth0").Output()
	if err != nil {
		return 0, 0
	}
	var st []struct {
		Stats64 struct {
			RX struct{ Bytes int64 } `json:"rx"`
			TX struct{ Bytes int64 } `json:"tx"`
		} `json:"stats64"`
	}
	if json.Unmarshal(out, &st) != nil || len(st) == 0 {
		return 0, 0
	}
	return st[0].Stats64.RX.Bytes, st[0].Stats64.TX.Bytes
}

// measure records the server link's bytes from now until the returned
// function is called.
func (s *storm) measure(r *stormRow) func() {
	rx0, tx0 := s.linkBytes()
	return func() {
		rx1, tx1 := s.linkBytes()
		r.FromWS, r.ToWS = rx1-rx0, tx1-tx0
	}
}

// copyFile copies the template (sparse) for a workstation or a share.
func copySparse(src, dst string) error {
	if out, err := exec.Command("cp", "--sparse=always", "--reflink=never", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v %s", err, out)
	}
	return nil
}

func (s *storm) runLocal(ctx context.Context, r *stormRow, dir string) error {
	var paths []string
	for i := range r.N {
		p := filepath.Join(dir, fmt.Sprintf("ws%d.img", i+1))
		if err := copySparse(s.template, p); err != nil {
			return err
		}
		paths = append(paths, p)
	}
	if err := dropCaches(); err != nil {
		return err
	}
	startAt, wks, wg := s.startWorkers(r.N, func(i int) []string { return []string{"-mode", "file", "-path", paths[i]} }, func(*worker) {})
	wg.Wait()
	r.collect(startAt, wks)
	for i, p := range paths {
		s.check(r, i, p)
	}
	return ctx.Err()
}

// runFuseLoopback is the floor of any FUSE filesystem: each workstation's
// copy of its clone on its local disk, served through a go-fuse loopback
// mount (`dvfs bench-loopback`, every read and write through the daemon)
// and nothing else: no cache, no overlay, no server. Its CPU counts the
// workload and the loopback daemon, as dvfs's counts the workload and the
// mount. With passthrough (target passthrough) the kernel reads and writes
// the local copy itself once the file is open: the floor of a FUSE
// filesystem whose open files each have one local backing file.
func (s *storm) runFuseLoopback(ctx context.Context, r *stormRow, dir string, passthrough bool) error {
	var paths []string
	loops := make([]*bg, r.N)
	for i := range r.N {
		data := filepath.Join(dir, fmt.Sprintf("ws%d", i+1), "data")
		mnt := filepath.Join(dir, fmt.Sprintf("ws%d", i+1), "mnt")
		if err := os.MkdirAll(data, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			return err
		}
		if err := copySparse(s.template, filepath.Join(data, "disk.img")); err != nil {
			return err
		}
		args := []string{"bench-loopback", data, mnt}
		if passthrough {
			args = append(args, "--passthrough")
		}
		l, err := s.startMountDaemon(ctx, i, mnt, filepath.Join(dir, fmt.Sprintf("ws%d.loopback.log", i+1)), "the loopback mount", nil, args...)
		if err != nil {
			return err
		}
		loops[i] = l
		paths = append(paths, filepath.Join(mnt, "disk.img"))
	}
	if err := dropCaches(); err != nil {
		return err
	}
	lcpu0 := make([]float64, r.N)
	for i, l := range loops {
		lcpu0[i] = procCPU(l.cmd.Process.Pid)
	}
	lcpuWork := make([]float64, r.N)
	startAt, wks, wg := s.startWorkers(r.N, func(i int) []string { return []string{"-mode", "file", "-path", paths[i]} }, func(wk *worker) {
		lcpuWork[wk.i] = procCPU(loops[wk.i].cmd.Process.Pid) - lcpu0[wk.i]
	})
	wg.Wait()
	r.collect(startAt, wks)
	for i, l := range loops {
		l.stop(30 * time.Second)
		r.WSCPU[i] += l.cpu() - lcpu0[i]
		r.WSCPUWork[i] += lcpuWork[i]
		s.check(r, i, filepath.Join(dir, fmt.Sprintf("ws%d", i+1), "data", "disk.img"))
	}
	return ctx.Err()
}

// procTree samples the CPU time (utime+stime) and disk write_bytes of a
// process and its descendants (smbd forks one per client) until stopped,
// keeping the last CPU time of every process seen.
type procTree struct {
	root int
	mu   sync.Mutex
	cpu  map[int]float64
	wb   map[int]int64 // of the processes alive at the last sample
	stop chan struct{}
	done chan struct{}
}

func watchTree(root int) *procTree {
	t := &procTree{root: root, cpu: map[int]float64{}, wb: map[int]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			t.sample()
			select {
			case <-t.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return t
}

var clkTck = 100.0 // USER_HZ

func (t *procTree) sample() {
	pids := []int{t.root}
	for k := 0; k < len(pids); k++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pids[k], pids[k]))
		if err == nil {
			for _, f := range strings.Fields(string(b)) {
				if p, err := strconv.Atoi(f); err == nil {
					pids = append(pids, p)
				}
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// A parent's /proc/PID/io includes the children it has reaped: count
	// only the processes alive now (the root holds the rest).
	clear(t.wb)
	for _, p := range pids {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil {
			// Fields after the command (which may hold spaces): state is 3,
			// utime 14, stime 15.
			if i := bytes.LastIndexByte(b, ')'); i > 0 {
				f := strings.Fields(string(b[i+1:]))
				if len(f) > 13 {
					u, _ := strconv.ParseFloat(f[11], 64)
					st, _ := strconv.ParseFloat(f[12], 64)
					t.cpu[p] = (u + st) / clkTck
				}
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p)); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
					t.wb[p], _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
	}
}

// totals samples once more and returns the tree's CPU seconds and bytes
// written so far.
func (t *procTree) totals() (cpu float64, wb int64) {
	t.sample()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range t.cpu {
		cpu += v
	}
	for _, v := range t.wb {
		wb += v
	}
	return cpu, wb
}

// end stops sampling.
func (t *procTree) end() {
	close(t.stop)
	<-t.done
}

// procCPU is a live process's CPU time so far (utime+stime), seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck
}

// waitFor polls cond until it holds or timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// bg is a background process (a server, a mount) whose output goes to a
// file.
type bg struct {
	cmd  *exec.Cmd
	path string
	done chan struct{}
}

// startBG starts cmd with its output in a file.
func startBG(cmd *exec.Cmd, path string) (*bg, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	b := &bg{cmd: cmd, path: path, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(b.done) }()
	return b, nil
}

// log is its output so far.
func (b *bg) log() string { out, _ := os.ReadFile(b.path); return string(out) }

// wait waits up to timeout for it to end.
func (b *bg) wait(timeout time.Duration) bool {
	select {
	case <-b.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (b *bg) stop(grace time.Duration) {
	b.cmd.Process.Signal(syscall.SIGTERM)
	if !b.wait(grace) {
		b.cmd.Process.Kill()
		<-b.done
	}
}

// cpu is the CPU time it used (once ended; with the children it waited
// for).
func (b *bg) cpu() float64 {
	if b.cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := b.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return 0
}

var servingLine = regexp.MustCompile(`msg=serving`)
