//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/net/ipv4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// benchMulticast sends one template to 1, 4 and 8 receivers in network
// namespaces, the sender's link shaped with tbf, with dvfs's multicast
// session (in this process: sender and receivers on goroutines, each
// socket opened in its node's namespace), with uftp (uftpd receivers) and
// with udpcast (udp-sender, udp-receiver), one after the other in the
// same run over the same network.
func benchMulticast(args []string) error {
	fl := flag.NewFlagSet("multicast", flag.ExitOnError)
	sizeStr := fl.String("size", "2GiB", "template size")
	dir := fl.String("dir", "/var/tmp", "scratch directory: the image, the repository and every receiver's copy")
	work := fl.String("work", "", "keep the image and repository in this directory and reuse them across runs")
	data := fl.String("data", "random", "template content: random (incompressible, the receivers' hardest case) or vm (bench's VM-disk-like image)")
	counts := fl.String("receivers", "1,4,8", "receiver counts")
	toolsStr := fl.String("tools", "dvfs,uftp,udpcast", "tools to measure")
	rateStr := fl.String("rate", "1gbit", "tbf rate of the sender's link (tc syntax, gbit or mbit)")
	packet := fl.Int("packet", multicast.DefaultPacketSize, "dvfs UDP payload size")
	join := fl.Duration("join", 0, "dvfs join window (0: the sender's default); the sender starts sooner once every receiver has joined")
	settle := fl.Duration("settle", 15*time.Second, "pause before every row, after the previous row's files are deleted and synced (online discard)")
	uftpBlock := fl.Int("uftp-block", 1300, "uftp block size (-b)")
	slow := fl.Bool("slow", false, "also run 4 receivers of which one is paused half the time (250 ms of every 500 ms), "+
		"after 4 healthy ones, with every tool")
	jumbo := fl.Bool("jumbo", false, "then set MTU 9000 on every link and run every receiver count again with jumbo packets: "+
		"dvfs with -jumbo-packet, uftp with -b 8800 (udpcast's blocks stop at 1456 bytes)")
	jumboPacket := fl.Int("jumbo-packet", multicast.JumboPacketSize, "dvfs UDP payload size on the MTU 9000 rows")
	cpuprofile := fl.String("cpuprofile", "", "write a CPU profile of each dvfs run (sender and receivers) to FILE.N, N receivers")
	traceOut := fl.String("trace", "", "write an execution trace of each dvfs run to FILE.N (go tool trace -pprof=sched FILE.N: where goroutines waited to run)")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	rate, err := parseRate(*rateStr)
	if err != nil {
		return err
	}
	var ns []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad receiver count %q", s)
		}
		ns = append(ns, n)
	}
	tools := strings.Split(*toolsStr, ",")
	for _, t := range tools {
		if t != "dvfs" && t != "uftp" && t != "udpcast" {
			return fmt.Errorf("unknown tool %q", t)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("multicast needs root (network namespaces)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b := &mcBench{size: int64(size), rate: rate, packet: *packet, join: *join, settle: *settle, uftpBlock: *uftpBlock, mtu: 1500, cmds: map[string][]string{}}
	b.work = *work
	if b.work == "" {
		if b.work, err = os.MkdirTemp(*dir, "dvfs-bench-multicast"); err != nil {
			return err
		}
		defer os.RemoveAll(b.work)
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	if err := b.prepare(ctx, *data); err != nil {
		return err
	}
	defer b.store.Close()

	maxN := 4
	for _, n := range ns {
		maxN = max(maxN, n)
	}
	tn, err := newTestNet(maxN + 1)
	if err != nil {
		return err
	}
	defer tn.close()
	b.tn = tn
	shapeCmd, err := tn.shape(0, *rateStr)
	if err != nil {
		return err
	}
	fmt.Printf("network: %d namespaces on a bridge; the sender's eth0 shaped: %s\n", maxN+1, strings.Join(shapeCmd, " "))

	b.profile = *cpuprofile
	b.trace = *traceOut

	var rows []mcRow
	row := func(tool string, n, slow int) error {
		r, err := b.run(ctx, tool, n, slow)
		if err != nil && tool != "dvfs" {
			// A baseline that fails (udp-sender drops a receiver it
			// finds too slow, and udp-receiver then exits 1) is a
			// result of that tool: record it, go on.
			first, _, _ := strings.Cut(err.Error(), "\n")
			r = mcRow{tool: tool, n: n, mtu: b.mtu, slow: slow, failed: first}
			err = nil
		}
		if err != nil {
			return fmt.Errorf("%s to %d (slow %d, MTU %d): %w", tool, n, slow, b.mtu, err)
		}
		r.print()
		rows = append(rows, r)
		return nil
	}
	for _, n := range ns {
		for _, tool := range tools {
			if err := row(tool, n, -1); err != nil {
				return err
			}
		}
	}
	if *slow {
		// Each tool's slow run comes right after a healthy run of the
		// same size (again, when the rows above ran long before), so
		// the two see the same machine.
		for _, tool := range tools {
			if last := rows[len(rows)-1]; last.tool != tool || last.n != 4 {
				if err := row(tool, 4, -1); err != nil {
					return err
				}
			}
			if err := row(tool, 4, 1); err != nil {
				return err
			}
		}
	}
	if *jumbo {
		if err := tn.setMTU(9000); err != nil {
			return err
		}
		b.mtu, b.packet, b.uftpBlock = 9000, *jumboPacket, 8800
		fmt.Printf("MTU 9000 on every link: dvfs packets of %d bytes, uftp blocks of %d\n", b.packet, b.uftpBlock)
		for _, n := range ns {
			for _, tool := range tools {
				if tool == "udpcast" {
					continue // its block size stops at 1456 bytes: nothing to compare
				}
				if err := row(tool, n, -1); err != nil {
					return err
				}
			}
		}
	}

	fmt.Printf("\n%s of %s data to each receiver; the sender's link shaped to %s (%.1f MiB/s)\n",
		humanize.IBytes(size), *data, *rateStr, float64(rate)/(1<<20))
	fmt.Printf("%-8s %4s %5s %-6s %8s %12s %9s %10s %7s  %s\n", "tool", "rx", "mtu", "slow", "wall s", "MiB/s/rx", "/shaped", "sent/need", "others", "notes")
	for _, r := range rows {
		r.printRow(b)
	}
	if *slow {
		printSlow(rows)
	}
	fmt.Println()
	for _, mtu := range []int{1500, 9000} {
		for _, tool := range tools {
			var w1, w8 time.Duration
			for _, r := range rows {
				if r.tool == tool && r.slow < 0 && r.mtu == mtu && r.failed == "" {
					switch r.n {
					case 1:
						w1 = r.wall
					case 8:
						w8 = r.wall
					}
				}
			}
			if w1 > 0 && w8 > 0 {
				fmt.Printf("%-8s MTU %d: wall(8)/wall(1) = %.2f (goal for dvfs <= 1.15)\n", tool, mtu, w8.Seconds()/w1.Seconds())
			}
		}
	}
	fmt.Println("\ncommands (N receivers in namespaces 1..N; shown for the last run of each tool):")
	fmt.Println("  " + strings.Join(shapeCmd, " "))
	for _, tool := range tools {
		for _, c := range b.cmds[tool] {
			fmt.Println("  " + c)
		}
	}
	return nil
}

// parseRate turns tc's "1gbit" or "500mbit" into bytes per second.
func parseRate(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, err
			}
			return int64(f * u.mult / 8), nil
		}
	}
	return 0, fmt.Errorf("rate %q: want NNgbit or NNmbit", s)
}

// mcBench is one run's shared state.
type mcBench struct {
	work      string
	size      int64
	rate      int64 // the shaped rate, bytes per second
	packet    int
	join      time.Duration
	settle    time.Duration // before every row
	uftpBlock int
	image     string
	store     *badgerstore.Store
	repo      *repo.Repo
	signed    []byte
	m         *manifest.Manifest
	mtu       int // of every link, for the rows to come
	tn        *testNet
	profile   string // CPU profile of each dvfs run: profile.N
	trace     string // execution trace of each dvfs run: trace.N
	cmds      map[string][]string
}

// mcRow is one measurement.
type mcRow struct {
	tool   string
	n      int
	mtu    int             // of the links
	slow   int             // index of the paused receiver, -1: none
	wall   time.Duration   // sender start to the last receiver done
	others time.Duration   // to the last receiver that was not paused
	each   []time.Duration // per receiver
	over   float64         // bytes sent / bytes needed (dvfs)
	// slowEnd says how the paused receiver ended (left for unicast, kept
	// up, dropped by the sender).
	slowEnd string
	// otherCPU is the CPU time (core-seconds) other processes on the
	// machine used during the run: a busy machine makes a row suspect.
	otherCPU float64
	// cpu is the CPU time the tool used (this process and the children
	// it waited for), core-seconds: against 2 x wall it says whether the
	// run was CPU-bound.
	cpu  float64
	note string
	// failed says why the run failed (a baseline tool's error).
	failed string
}

func (r mcRow) print() {
	if r.failed != "" {
		fmt.Printf("%-8s rx=%d mtu=%d slow=%v FAILED: %s\n", r.tool, r.n, r.mtu, r.slow >= 0, r.failed)
		return
	}
	fmt.Printf("%-8s rx=%d mtu=%d slow=%v wall %.2fs", r.tool, r.n, r.mtu, r.slow >= 0, r.wall.Seconds())
	if r.slow >= 0 {
		fmt.Printf(" others %.2fs", r.others.Seconds())
	}
	fmt.Printf(" CPU %.1f core-s, others' CPU %.1f core-s; %s\n", r.cpu, r.otherCPU, r.note)
}

// cpuTimes returns the CPU time the whole machine has been busy and the
// time this process and its waited-for children used, in core-seconds.
func cpuTimes() (busy, mine float64) {
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest
				continue
			}
			n, _ := strconv.ParseFloat(v, 64)
			busy += n / 100 // USER_HZ
		}
	}
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			mine += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		}
	}
	return busy, mine
}

func (r mcRow) printRow(b *mcBench) {
	if r.failed != "" {
		fmt.Printf("%-8s %4d %5d %-6s %8s %12s %9s %10s %7s  failed: %s\n", r.tool, r.n, r.mtu, "-", "-", "-", "-", "-", "-", r.failed)
		return
	}
	wall := r.wall
	slow := "-"
	if r.slow >= 0 {
		slow = "1 of 4"
		wall = r.others // the group's time; the paused receiver's is in the notes
	}
	gp := float64(b.size) / wall.Seconds()
	over := "-"
	if r.over > 0 {
		over = fmt.Sprintf("%.3f", r.over)
	}
	note := r.note
	if r.slow >= 0 {
		note = fmt.Sprintf("paused receiver done at %.2fs; %s", r.wall.Seconds(), note)
	}
	fmt.Printf("%-8s %4d %5d %-6s %8.2f %12.1f %9.3f %10s %7.1f  %s\n", r.tool, r.n, r.mtu, slow, wall.Seconds(), gp/(1<<20), gp/float64(b.rate), over, r.otherCPU, note)
}

// printSlow compares, per tool, the healthy receivers' wall time with a
// paused receiver among them against the same 4 receivers all healthy.
func printSlow(rows []mcRow) {
	fmt.Println("\none receiver of 4 paused 250 ms of every 500 ms: the healthy receivers' wall time (the last of them)")
	fmt.Printf("%-8s %14s %14s %7s %12s  %s\n", "tool", "all healthy s", "one paused s", "ratio", "paused s", "the paused receiver")
	for i, r := range rows {
		if r.slow < 0 {
			continue
		}
		var base *mcRow
		for j := i - 1; j >= 0; j-- {
			if b := rows[j]; b.tool == r.tool && b.n == r.n && b.slow < 0 && b.mtu == r.mtu {
				base = &rows[j]
				break
			}
		}
		if base == nil {
			continue
		}
		fmt.Printf("%-8s %14.2f %14.2f %7.2f %12.2f  %s\n", r.tool, base.wall.Seconds(), r.others.Seconds(),
			r.others.Seconds()/base.wall.Seconds(), r.wall.Seconds(), r.slowEnd)
	}
}

const benchKeySeed = "dvfs bench multicast signing key"

// prepare writes the image and publishes it into a repository (badger,
// as the server keeps it), or reuses both from an earlier run.
func (b *mcBench) prepare(ctx context.Context, data string) error {
	imgDir := filepath.Join(b.work, "img")
	b.image = filepath.Join(imgDir, "disk.img")
	st, err := os.Stat(b.image)
	fresh := err != nil || st.Size() != b.size
	if fresh {
		os.RemoveAll(imgDir)
		os.RemoveAll(filepath.Join(b.work, "repo"))
		if err := os.MkdirAll(imgDir, 0o755); err != nil {
			return err
		}
		fmt.Printf("writing a %s %s image in %s\n", humanize.IBytes(uint64(b.size)), data, imgDir)
		switch data {
		case "random":
			err = writeRandom(b.image, b.size)
		case "vm":
			err = writeVMImage(b.image, b.size, 1)
		default:
			err = fmt.Errorf("unknown data %q", data)
		}
		if err != nil {
			return err
		}
	}
	b.store, err = badgerstore.Open(filepath.Join(b.work, "repo"), badgerstore.Config{})
	if err != nil {
		return err
	}
	key := ed25519.NewKeyFromSeed([]byte(benchKeySeed[:ed25519.SeedSize]))
	b.repo, err = repo.New(repo.Config{Store: b.store, Key: key})
	if err != nil {
		return err
	}
	b.signed, err = b.repo.Signed(ctx, "bench", 0)
	if errors.Is(err, repo.ErrNotFound) {
		start := time.Now()
		res, err := publish.Publish(ctx, publish.Config{Server: repoServer{b.repo}, Name: "bench", Dir: imgDir})
		if err != nil {
			return err
		}
		fmt.Printf("published %s in %.1fs: %d blocks, %d holes, %s of frames\n", humanize.IBytes(uint64(res.Bytes)),
			time.Since(start).Seconds(), res.Blocks, res.HoleBlocks, humanize.IBytes(uint64(res.SentBytes)))
		b.signed, err = b.repo.Signed(ctx, "bench", 0)
		if err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	b.m, _, err = manifest.Open(b.signed, b.repo.PublicKey())
	return err
}

// repoServer publishes straight into the repository (what sync/server
// does behind HTTP).
type repoServer struct{ r *repo.Repo }

func (s repoServer) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	return s.r.Missing(ctx, ids)
}

func (s repoServer) UploadParts(ctx context.Context, parts [][]byte) error {
	var blocks []blockstore.Block
	if err := api.ParseBatch(bytes.Join(parts, nil), func(id blockstore.ID, frame []byte) error {
		blocks = append(blocks, blockstore.Block{ID: id, Frame: frame})
		return nil
	}); err != nil {
		return err
	}
	return s.r.PutBlocks(ctx, blocks)
}

func (s repoServer) Commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error) {
	return s.r.Commit(ctx, m)
}

// repoFetcher is a receiver's unicast path, straight from the repository.
type repoFetcher struct{ r *repo.Repo }

func (f repoFetcher) FetchFrames(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, frame, plain []byte) error) error {
	var fr, plain []byte
	for _, id := range ids {
		var err error
		if fr, err = f.r.Frame(ctx, id, fr[:0]); err != nil {
			return err
		}
		if plain, err = blockstore.Open(id, fr, plain[:0]); err != nil {
			return err
		}
		if err := fn(id, fr, plain); err != nil {
			return err
		}
	}
	return nil
}

// run measures one tool to n receivers (nodes 1..n); slow, if >= 0, is
// the receiver paused half the time.
func (b *mcBench) run(ctx context.Context, tool string, n, slow int) (mcRow, error) {
	// Ten times the time the shaped link needs, and a minute to start.
	ctx, cancel := context.WithTimeout(ctx, time.Minute+10*time.Duration(float64(b.size)/float64(b.rate)*float64(time.Second)))
	defer cancel()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(b.work, fmt.Sprintf("%s-rx%d", tool, i+1))
		os.RemoveAll(dirs[i])
		if err := os.MkdirAll(dirs[i], 0o755); err != nil {
			return mcRow{}, err
		}
	}
	defer func() {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
		syscall.Sync()
	}()
	syscall.Sync()
	// The root file system of the reference machine is mounted with
	// online discard, and the previous row's receivers left 2-16 GiB to
	// discard. The guest's counters show the discards done at the sync,
	// but the virtual disk stays slow for a while: eight dvfs receivers
	// right after 8 GB were deleted summed 51 s of store time (19.83 s
	// wall), 38 s (19.13 s) when the same row ran 20 s later. Every row
	// of every tool waits the same settle time before it starts.
	time.Sleep(b.settle)
	r := mcRow{tool: tool, n: n, mtu: b.mtu, slow: slow}
	busy0, mine0 := cpuTimes()
	drops0 := b.drops(n)
	var err error
	switch tool {
	case "dvfs":
		err = b.runDvfs(ctx, &r, dirs)
	case "uftp":
		err = b.runUftp(ctx, &r, dirs)
	case "udpcast":
		err = b.runUdpcast(ctx, &r, dirs)
	}
	if err != nil {
		return r, err
	}
	busy1, mine1 := cpuTimes()
	r.otherCPU = max(0, (busy1-busy0)-(mine1-mine0))
	r.cpu = mine1 - mine0
	drops1 := b.drops(n)
	r.note = fmt.Sprintf("dropped: %d at the tbf, %d in receivers' socket buffers; %s",
		drops1.shaper-drops0.shaper, drops1.rcvbuf-drops0.rcvbuf, r.note)
	for i, d := range r.each {
		r.wall = max(r.wall, d)
		if i != slow {
			r.others = max(r.others, d)
		}
	}
	if slow >= 0 && r.slowEnd == "" {
		r.slowEnd = "had the whole copy with the others"
		if d := r.each[slow] - r.others; d > time.Second {
			r.slowEnd = fmt.Sprintf("had the whole copy %.1fs after the others", d.Seconds())
		}
	}
	return r, nil
}

// drops are the packets lost where the benchmark can count them.
type drops struct {
	shaper int64 // dropped by the sender's tbf
	rcvbuf int64 // UDP datagrams nodes 1..n dropped for a full socket buffer
}

func (b *mcBench) drops(n int) drops {
	var d drops
	if out, err := b.tn.exec(0, "tc", "-s", "qdisc", "show", "dev", "eth0").Output(); err == nil {
		// " Sent 123 bytes 45 pkt (dropped 6, overlimits 7 requeues 0)"
		if _, rest, ok := strings.Cut(string(out), "(dropped "); ok {
			d.shaper, _ = strconv.ParseInt(strings.TrimRight(strings.Fields(rest)[0], ","), 10, 64)
		}
	}
	for i := 1; i <= n; i++ {
		out, err := b.tn.exec(i, "cat", "/proc/net/snmp").Output()
		if err != nil {
			continue
		}
		var keys []string
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if keys == nil {
				keys = f
				continue
			}
			for j, k := range keys {
				if k == "RcvbufErrors" && j < len(f) {
					v, _ := strconv.ParseInt(f[j], 10, 64)
					d.rcvbuf += v
				}
			}
		}
	}
	return d
}

var mcGroup = &net.UDPAddr{IP: net.IPv4(239, 78, 0, 1), Port: 47001}

// pausedConn stops reading for the second half of every period, like a
// receiver whose process is stopped half the time: the kernel's buffer
// overflows and it loses what the group does not.
type pausedConn struct {
	multicast.PacketConn
	start  time.Time
	period time.Duration
}

func (p *pausedConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if in := time.Since(p.start) % p.period; in >= p.period/2 {
		time.Sleep(p.period - in)
	}
	return p.PacketConn.ReadBatch(ms, flags)
}

func (b *mcBench) runDvfs(ctx context.Context, r *mcRow, dirs []string) error {
	n := len(dirs)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var sconn multicast.PacketConn
	if err := b.tn.in(0, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		sconn, err = multicast.DialGroup(&net.UDPAddr{IP: b.tn.addr(0)}, ifi, 1)
		return err
	}); err != nil {
		return err
	}
	defer sconn.Close()
	conns := make([]multicast.PacketConn, n)
	stores := make([]*badgerstore.Store, n)
	defer func() {
		for i := range n {
			if conns[i] != nil {
				conns[i].Close()
			}
			if stores[i] != nil {
				stores[i].Close()
			}
		}
	}()
	for i := range n {
		if err := b.tn.in(i+1, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			conns[i], err = multicast.ListenGroup(mcGroup, ifi)
			return err
		}); err != nil {
			return err
		}
		var err error
		if stores[i], err = badgerstore.Open(dirs[i], badgerstore.Config{Volatile: true, DirectWrites: true}); err != nil {
			return err
		}
	}
	snd, err := multicast.NewSender(multicast.SenderConfig{Conn: sconn, Group: mcGroup, Source: b.repo, Manifest: b.m,
		PacketSize: b.packet, JoinWindow: b.join, MinReceivers: n, Logger: log})
	if err != nil {
		return err
	}
	if b.profile != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", b.profile, n))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if b.trace != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", b.trace, n))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err == nil {
			defer trace.Stop()
		}
	}
	r.each = make([]time.Duration, n)
	stats := make([]multicast.ReceiverStats, n)
	errs := make([]error, n+1)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		conn := conns[i]
		if i == r.slow {
			conn = &pausedConn{PacketConn: conn, start: start, period: 500 * time.Millisecond}
		}
		rcv, err := multicast.NewReceiver(multicast.ReceiverConfig{Conn: conn, Manifest: b.m, Store: stores[i],
			Unicast: repoFetcher{b.repo}, ID: uint32(i + 1), JoinTimeout: 30 * time.Second, Logger: log})
		if err != nil {
			return err
		}
		wg.Go(func() {
			stats[i], errs[i+1] = rcv.Run(ctx)
			r.each[i] = time.Since(start)
		})
	}
	var sst multicast.SenderStats
	sdone := make(chan struct{})
	wg.Go(func() { sst, errs[0] = snd.Run(ctx); close(sdone) })
	// Sample the sender's rate: its mean says whether loss reports held
	// the session back.
	var rateSum, rateN, rateMin float64
	rateMin = 1e18
	func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sdone:
				return
			case <-t.C:
				v := float64(snd.Stats().Rate)
				rateSum, rateN, rateMin = rateSum+v, rateN+1, min(rateMin, v)
			}
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.over = sst.Overhead()
	var uni, left int
	var nacks, packets, reads int64
	var blocked, verify, store time.Duration
	var writes int64
	for i, st := range stats {
		writes += st.Stores
		blocked, verify, store = blocked+st.Blocked, verify+st.Verify, store+st.Store
		uni += st.Unicast
		nacks += st.Nacks
		packets += st.Packets
		reads += st.Reads
		if st.Left {
			left++
		}
		missing, err := stores[i].Missing(ctx, slicesCollect(b.m))
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return fmt.Errorf("receiver %d lacks %d blocks", i+1, len(missing))
		}
	}
	// How long the link carried the session against how long the sender
	// had data to send: below 1 the sender fell behind its pacing.
	wire := float64(sst.Bytes+sst.Packets*(8+20+14)) / float64(b.rate)
	r.note = fmt.Sprintf("packet %d, repairs %.1f%% of needed, %d NACKs, %d left, %d blocks by unicast, rate mean %.0f min %.0f MiB/s; "+
		"sending from %.3fs (MinReceivers %d); link busy %.2fs of the sender's %.2fs after that (data until %.2fs, behind its pacing %.2fs in %d stalls, the worst %.0fms; %d blocks read while sending waited, %.2fs; tail %.2fs); packets per send %.1f, per receiver read %.1f; "+
		"receivers (sums) waited %.2fs for their writers, which verified %.2fs and stored %.2fs in %d writes",
		b.packet, 100*float64(sst.RepairBytes)/float64(max(sst.NeededBytes, 1)), nacks, left, uni, rateSum/max(rateN, 1)/(1<<20), rateMin/(1<<20),
		sst.Waited.Seconds(), n, wire, (sst.Duration - sst.Waited).Seconds(), (sst.Drained - sst.Waited).Seconds(), sst.Behind.Seconds(),
		sst.Stalls, float64(sst.WorstStall)/float64(time.Millisecond), sst.ReadWaits, sst.ReadWait.Seconds(),
		(sst.Duration - sst.Drained).Seconds(), float64(sst.Packets)/float64(max(sst.Sends, 1)), float64(packets)/float64(max(reads, 1)),
		blocked.Seconds(), verify.Seconds(), store.Seconds(), writes)
	if r.slow >= 0 {
		st := stats[r.slow]
		r.slowEnd = fmt.Sprintf("kept up: all %d blocks by multicast", st.Multicast)
		if st.Left || st.Unicast > 0 {
			r.slowEnd = fmt.Sprintf("left (%s): %d blocks by multicast, %d by unicast", st.Reason, st.Multicast, st.Unicast)
		}
	}
	b.cmds["dvfs"] = []string{fmt.Sprintf("go run ./bench multicast -tools dvfs -packet %d -join %v (in-process: sender in %s, receivers in %s-1..N, each a badgerstore Volatile with DirectWrites, as dvfs mount opens its cache; links at MTU %d; "+
		"the sender starts once the N receivers have joined, else when the join window ends: SenderConfig.MinReceivers = N, dvfs serve --multicast-receivers N, "+
		"as uftp -H and udp-sender --min-receivers N)",
		b.packet, b.joinWindow(), b.tn.nodes[0], b.tn.prefix, b.mtu)}
	return nil
}

// joinWindow is the dvfs sender's join window.
func (b *mcBench) joinWindow() time.Duration {
	if b.join == 0 {
		return multicast.DefaultJoinWindow
	}
	return b.join
}

func slicesCollect(m *manifest.Manifest) []blockstore.ID {
	var ids []blockstore.ID
	for id := range m.BlockIDs() {
		if !id.IsHole() {
			ids = append(ids, id)
		}
	}
	return ids
}

// proc is an external command in a namespace, its output in a log file.
type proc struct {
	cmd  *exec.Cmd
	line string
	log  string
	done chan error
	end  time.Duration
}

func (b *mcBench) start(ctx context.Context, node int, logPath string, name string, args ...string) (*proc, error) {
	full := append([]string{"netns", "exec", b.tn.nodes[node], name}, args...)
	p := &proc{cmd: exec.CommandContext(ctx, "ip", full...), line: "ip " + strings.Join(full, " "), log: logPath, done: make(chan error, 1)}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	return p, nil
}

func (p *proc) wait(start time.Time) error {
	err := <-p.done
	p.end = time.Since(start)
	if err != nil {
		out, _ := os.ReadFile(p.log)
		return fmt.Errorf("%s: %v\n%s", p.line, err, tail(out, 2000))
	}
	return nil
}

func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// checkCopy checks that path is a byte-exact copy of the image.
func (b *mcBench) checkCopy(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() != b.size {
		return fmt.Errorf("%s: %d bytes, want %d", path, st.Size(), b.size)
	}
	out, err := exec.Command("cmp", path, b.image).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cmp %s: %v %s", path, err, out)
	}
	return nil
}

// pauser stops and continues pid every half period until stop is closed.
func pauser(pid int, period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period / 2)
	defer t.Stop()
	stopped := false
	for {
		select {
		case <-stop:
			syscall.Kill(pid, syscall.SIGCONT)
			return
		case <-t.C:
		}
		stopped = !stopped
		if stopped {
			syscall.Kill(pid, syscall.SIGSTOP)
		} else {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
}

func (b *mcBench) runUftp(ctx context.Context, r *mcRow, dirs []string) error {
	n := len(dirs)
	var lines []string
	var hosts []string
	var rx []*proc
	defer func() {
		for _, p := range rx {
			p.kill()
		}
	}()
	for i := range n {
		id := fmt.Sprintf("0x%08X", i+1)
		hosts = append(hosts, id)
		p, err := b.start(ctx, i+1, dirs[i]+".log", "uftpd", "-d", "-I", "eth0", "-M", "239.78.1.1", "-U", id, "-D", dirs[i])
		if err != nil {
			return err
		}
		rx = append(rx, p)
		lines = append(lines, p.line)
	}
	time.Sleep(500 * time.Millisecond) // let the daemons bind; not counted
	kbps := strconv.FormatInt(b.rate*8/1000, 10)
	start := time.Now()
	snd, err := b.start(ctx, 0, filepath.Join(b.work, "uftp.log"), "uftp", "-I", "eth0", "-M", "239.78.1.1", "-P", "239.78.1.2",
		"-R", kbps, "-b", strconv.Itoa(b.uftpBlock), "-H", strings.Join(hosts, ","), b.image)
	if err != nil {
		return err
	}
	lines = append(lines, snd.line)
	b.cmds["uftp"] = lines
	stopPause := make(chan struct{})
	if r.slow >= 0 {
		go pauser(rx[r.slow].cmd.Process.Pid, 500*time.Millisecond, stopPause)
	}
	err = snd.wait(start)
	close(stopPause)
	if err != nil {
		return err
	}
	// The clients' logs say when each had the whole file; read them once
	// the daemons are gone and their logs complete.
	for _, p := range rx {
		p.kill()
	}
	rx = nil
	r.each = make([]time.Duration, n)
	for i := range n {
		r.each[i] = snd.end // the sender ends when every client has confirmed or been dropped
		if at, ok := uftpDone(dirs[i]+".log", start); ok {
			r.each[i] = at
		}
		if err := b.checkCopy(filepath.Join(dirs[i], "disk.img")); err != nil {
			if i != r.slow {
				return err
			}
			// uftp has no other path: a client it drops keeps a partial copy.
			r.slowEnd = fmt.Sprintf("dropped by the sender, its copy incomplete (%v)", err)
		}
	}
	r.note = fmt.Sprintf("block %d", b.uftpBlock)
	return nil
}

// uftpDone finds when a uftpd client logged the end of its file transfer.
func uftpDone(logPath string, start time.Time) (time.Duration, bool) {
	out, err := os.ReadFile(logPath)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, "File transfer complete") || len(line) < 26 {
			continue
		}
		at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", line[:26], time.Local)
		if err == nil {
			return at.Sub(start), true
		}
	}
	return 0, false
}

func (b *mcBench) runUdpcast(ctx context.Context, r *mcRow, dirs []string) error {
	n := len(dirs)
	var lines []string
	var rx []*proc
	defer func() {
		for _, p := range rx {
			if p.end == 0 {
				p.kill()
			}
		}
	}()
	for i := range n {
		p, err := b.start(ctx, i+1, dirs[i]+".log", "udp-receiver", "--file", filepath.Join(dirs[i], "disk.img"),
			"--interface", "eth0", "--mcast-rdv-address", "239.78.2.1", "--nokbd")
		if err != nil {
			return err
		}
		rx = append(rx, p)
		lines = append(lines, p.line)
	}
	time.Sleep(500 * time.Millisecond)
	mbit := strconv.FormatInt(b.rate*8/1_000_000, 10) + "m"
	start := time.Now()
	snd, err := b.start(ctx, 0, filepath.Join(b.work, "udp-sender.log"), "udp-sender", "--file", b.image, "--interface", "eth0",
		"--mcast-rdv-address", "239.78.2.1", "--min-receivers", strconv.Itoa(n), "--max-bitrate", mbit, "--nokbd")
	if err != nil {
		return err
	}
	lines = append(lines, snd.line)
	b.cmds["udpcast"] = lines
	stopPause := make(chan struct{})
	if r.slow >= 0 {
		go pauser(rx[r.slow].cmd.Process.Pid, 500*time.Millisecond, stopPause)
	}
	r.each = make([]time.Duration, n)
	var errs []error
	for i, p := range rx {
		errs = append(errs, p.wait(start))
		r.each[i] = p.end
	}
	close(stopPause)
	errs = append(errs, snd.wait(start))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range n {
		if err := b.checkCopy(filepath.Join(dirs[i], "disk.img")); err != nil {
			return err
		}
	}
	r.note = "max-bitrate " + mbit
	return nil
}
