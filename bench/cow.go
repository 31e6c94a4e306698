//go:build linux

package main

import (
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

// benchCow measures what a clone write costs beyond the bytes the guest
// wrote: bytes over the wire to the server and growth of the server's
// store per byte written, the mount's CPU seconds, and fio's random-write
// IOPS in a clone, for the build under test and, in the same run, a
// baseline build of another revision (-baseline).
//
// Patterns, each into a fresh clone of a template of random data, fsynced
// once at the end and synced by `dvfs umount`:
//   - random: 4 KiB writes at random 4 KiB offsets over the whole disk;
//   - local: the same bytes in bursts of 16 writes within one 1 MiB extent
//     (the locality real guests show: a file system's metadata and a
//     file's blocks are written near each other);
//   - seq: 1 MiB writes, one after the other.
func benchCow(args []string) error {
	fl := flag.NewFlagSet("cow", flag.ExitOnError)
	sizeStr := fl.String("size", "2GiB", "the template disk's size")
	writeStr := fl.String("write", "32MiB", "bytes the guest writes per pattern")
	baseline := fl.String("baseline", "d6f4db3", "git revision to measure beside the working tree (\"\" for none)")
	patterns := fl.String("patterns", "random,local,seq", "write patterns")
	fioRuntime := fl.Duration("fio-runtime", 10*time.Second, "runtime of each fio job (0: no fio)")
	dir := fl.String("dir", "/var/tmp", "scratch directory")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	wsize, err := humanize.ParseBytes(*writeStr)
	if err != nil {
		return err
	}
	work, bin, cleanup, err := workspace(*dir, "cow")
	if err != nil {
		return err
	}
	defer cleanup()
	builds := []struct{ name, bin string }{{"this tree", bin}}
	if *baseline != "" {
		b, err := buildRevision(work, *baseline)
		if err != nil {
			return err
		}
		builds = append([]struct{ name, bin string }{{*baseline, b}}, builds...)
	}
	tpl := filepath.Join(work, "tpl")
	os.Mkdir(tpl, 0o755)
	if err := writeRandom(filepath.Join(tpl, "disk.vmdk"), int64(size)); err != nil {
		return err
	}
	fmt.Printf("clone writes into a %s template of random data, %s per pattern, synced at unmount\n\n", humanize.IBytes(size), humanize.IBytes(wsize))
	fmt.Printf("%-10s %-8s %10s %10s %7s %10s %7s %8s %8s\n", "build", "pattern", "written", "wire up", "ratio", "store +", "ratio", "CPU s", "umount")
	for _, b := range builds {
		res, err := cowBuild(work, b.bin, tpl, int64(size), int64(wsize), strings.Split(*patterns, ","), *fioRuntime)
		if err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		for _, r := range res.rows {
			fmt.Printf("%-10s %-8s %10s %10s %7.2f %10s %7.2f %8.2f %8s\n", b.name, r.pattern,
				humanize.IBytes(uint64(r.written)), humanize.IBytes(uint64(r.up)), float64(r.up)/float64(r.written),
				humanize.IBytes(uint64(max(0, r.store))), float64(r.store)/float64(r.written), r.cpu.Seconds(), r.umount.Round(time.Millisecond))
		}
		for _, f := range res.fio {
			fmt.Printf("%-10s fio %-14s %8.0f IOPS %8.1f MiB/s\n", b.name, f.name, f.iops, f.mibps)
		}
	}
	return nil
}

// buildRevision builds cmd/dvfs of git revision rev into work.
func buildRevision(work, rev string) (string, error) {
	src := filepath.Join(work, "src-"+rev)
	if out, err := exec.Command("git", "worktree", "add", "--detach", src, rev).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %v\n%s", rev, err, out)
	}
	defer exec.Command("git", "worktree", "remove", "--force", src).Run()
	bin := filepath.Join(work, "dvfs-"+rev)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/dvfs")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build at %s: %v\n%s", rev, err, out)
	}
	return bin, nil
}

type cowRow struct {
	pattern     string
	written, up int64
	store       int64
	cpu, umount time.Duration
	down        int64
}

type cowFio struct {
	name string
	fioResult
}

type cowResult struct {
	rows []cowRow
	fio  []cowFio
}

// cowBuild runs every pattern, then fio, with one build: its own server,
// behind a proxy that counts the bytes each way.
func cowBuild(work, bin, tpl string, size, wsize int64, patterns []string, fioRuntime time.Duration) (cowResult, error) {
	var res cowResult
	root := filepath.Join(work, "run-"+filepath.Base(bin))
	os.Mkdir(root, 0o755)
	defer os.RemoveAll(root)
	srv, err := startServer(bin, filepath.Join(root, "server"))
	if err != nil {
		return res, err
	}
	defer srv.stop()
	px, err := newCountingProxy(strings.TrimPrefix(srv.url, "http://"))
	if err != nil {
		return res, err
	}
	defer px.close()
	env := []string{"DVFS_SERVER=http://" + px.addr(), "DVFS_TOKEN=" + srv.token}
	if _, out, err := run(env, bin, "template", "publish", "--name", "cow", tpl); err != nil {
		return res, fmt.Errorf("publish: %v\n%s", err, out)
	}
	store := filepath.Join(root, "server", "store")
	for i, p := range patterns {
		if p == "" {
			continue
		}
		clone := fmt.Sprintf("c%d", i)
		if _, out, err := run(env, bin, "clone", "create", "--template", "cow", clone); err != nil {
			return res, fmt.Errorf("clone create: %v\n%s", err, out)
		}
		mnt := filepath.Join(root, "mnt"+clone)
		os.Mkdir(mnt, 0o755)
		dv, err := startDaemon(env, mnt, bin, "mount", "--cache", filepath.Join(root, "cache"+clone), "--sync-interval", "1h", mnt)
		if err != nil {
			return res, err
		}
		path := filepath.Join(mnt, "clones", clone, "disk.vmdk")
		// Warm the template blocks the pattern touches into the cache
		// first, as a running VM has them: the rows count writes only.
		if err := readAll(path); err != nil {
			dv.stop()
			return res, err
		}
		before, err := dirUse(store)
		if err != nil {
			dv.stop()
			return res, err
		}
		cpu0 := time.Duration(procCPU(dv.pid()) * float64(time.Second))
		up0, down0 := px.counts()
		written, err := writePattern(path, p, size, wsize)
		if err != nil {
			dv.stop()
			return res, err
		}
		start := time.Now()
		_, out, err := run(env, bin, "umount", mnt)
		if err != nil {
			dv.stop()
			return res, fmt.Errorf("umount: %v\n%s", err, out)
		}
		um := time.Since(start)
		dv.cmd.Wait()
		cpu := time.Duration(0)
		if st := dv.cmd.ProcessState; st != nil {
			if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
				cpu = time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) - cpu0
			}
		}
		up1, down1 := px.counts()
		time.Sleep(time.Second) // the server's intake settles
		after, err := dirUse(store)
		if err != nil {
			return res, err
		}
		res.rows = append(res.rows, cowRow{pattern: p, written: written, up: up1 - up0, down: down1 - down0, store: after - before, cpu: cpu, umount: um})
	}
	if fioRuntime <= 0 {
		return res, nil
	}
	if _, err := exec.LookPath("fio"); err != nil {
		return res, fmt.Errorf("fio is not installed (apt-get install fio)")
	}
	for _, w := range []workload{{"rand write 4K", "randwrite", "4k", true}, {"rand write 64K", "randwrite", "64k", true}} {
		clone := "fio" + w.bs
		if _, out, err := run(env, bin, "clone", "create", "--template", "cow", clone); err != nil {
			return res, fmt.Errorf("clone create: %v\n%s", err, out)
		}
		mnt := filepath.Join(root, "mnt"+clone)
		os.Mkdir(mnt, 0o755)
		dv, err := startDaemon(env, mnt, bin, "mount", "--cache", filepath.Join(root, "cache"+clone), mnt)
		if err != nil {
			return res, err
		}
		path := filepath.Join(mnt, "clones", clone, "disk.vmdk")
		if err := readAll(path); err != nil {
			dv.stop()
			return res, err
		}
		r, err := runFio(path, w, size, fioRuntime)
		dv.stop()
		if err != nil {
			return res, err
		}
		res.fio = append(res.fio, cowFio{w.name, r})
	}
	return res, nil
}

// writePattern writes about wsize bytes into path in the named pattern,
// fsyncs, and returns how many bytes it wrote.
func writePattern(path, pattern string, size, wsize int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	const page = 4096
	buf := make([]byte, 1<<20)
	var written int64
	write := func(p []byte, off int64) error {
		fillRandom(r, p)
		_, err := f.WriteAt(p, off)
		written += int64(len(p))
		return err
	}
	switch pattern {
	case "random":
		for written < wsize {
			if err := write(buf[:page], r.Int64N(size/page)*page); err != nil {
				return written, err
			}
		}
	case "local":
		for written < wsize {
			extent := r.Int64N(size/(1<<20)) << 20
			for range 16 {
				if err := write(buf[:page], extent+r.Int64N((1<<20)/page)*page); err != nil {
					return written, err
				}
			}
		}
	case "seq":
		off := r.Int64N((size-wsize)/(1<<20)+1) << 20
		for written < wsize {
			if err := write(buf, off+written); err != nil {
				return written, err
			}
		}
	default:
		return 0, fmt.Errorf("unknown pattern %q (random, local, seq)", pattern)
	}
	return written, f.Sync()
}

func fillRandom(r *rand.Rand, p []byte) {
	for i := 0; i+8 <= len(p); i += 8 {
		v := r.Uint64()
		for k := range 8 {
			p[i+k] = byte(v >> (8 * k))
		}
	}
}

// countingProxy forwards TCP connections to a server and counts the bytes
// each way: what a workstation sends to the server and gets back.
type countingProxy struct {
	ln       net.Listener
	up, down atomic.Int64
	wg       sync.WaitGroup
}

func newCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go p.pipe(s, c, &p.up)
			go p.pipe(c, s, &p.down)
		}
	}()
	return p, nil
}

func (p *countingProxy) pipe(dst, src net.Conn, n *atomic.Int64) {
	buf := make([]byte, 256<<10)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			if _, werr := dst.Write(buf[:k]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			if err != io.EOF {
				src.Close()
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

func (p *countingProxy) addr() string { return p.ln.Addr().String() }

func (p *countingProxy) counts() (up, down int64) { return p.up.Load(), p.down.Load() }

func (p *countingProxy) close() { p.ln.Close(); p.wg.Wait() }
