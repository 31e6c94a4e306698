//go:build linux

package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/dustin/go-humanize"
)

// benchPublish measures `dvfs template publish` of a VM-disk-like image
// against `cp` of the same file on the same disk (followed by sync, since a
// publish is durable when it returns), page cache dropped before each.
func benchPublish(args []string) error {
	fl := flag.NewFlagSet("publish", flag.ExitOnError)
	sizeStr := fl.String("size", "2GiB", "image size")
	dir := fl.String("dir", "/var/tmp", "scratch directory (on the disk measured)")
	runs := fl.Int("runs", 3, "measurements of each")
	image := fl.String("image", "", "publish this existing image instead of writing one")
	keep := fl.String("keep", "", "keep the image written at this path (with -image: reuse it)")
	cpuprofile := fl.String("cpuprofile", "", "write CPU profiles of the last run's server and client to FILE.server and FILE.client")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	work, bin, cleanup, err := workspace(*dir, "publish")
	if err != nil {
		return err
	}
	defer cleanup()
	vm := filepath.Join(work, "vm")
	os.Mkdir(vm, 0o755)
	img := filepath.Join(vm, "disk-flat.vmdk")
	if *image != "" {
		if err := os.Link(*image, img); err != nil {
			return err
		}
		st, err := os.Stat(img)
		if err != nil {
			return err
		}
		size = uint64(st.Size())
	} else {
		fmt.Printf("writing a %s VM-disk-like image in %s\n", humanize.IBytes(size), work)
		if err := writeVMImage(img, int64(size), 1); err != nil {
			return err
		}
		if *keep != "" {
			if err := os.Link(img, *keep); err != nil {
				return err
			}
		}
	}

	fmt.Printf("%-4s %-30s %10s %12s %16s %16s %12s %14s\n", "run", "what", "seconds", "MiB/s", "server VmHWM", "server anon peak", "store", "compressed in")
	var cpBest time.Duration
	best := map[string]time.Duration{}
	var peakMax, anonMax int64
	modes := []struct{ name, flag string }{
		{"dvfs template publish", "--compress=auto"},
		{"  ... --compress=yes", "--compress=yes"},
	}
	for i := 1; i <= *runs; i++ {
		dst := filepath.Join(work, "copy")
		if err := dropCaches(); err != nil {
			return err
		}
		d, _, err := run(nil, "sh", "-c", fmt.Sprintf("cp --reflink=never --sparse=always %q %q && sync %q", img, dst, dst))
		if err != nil {
			return err
		}
		os.Remove(dst)
		fmt.Printf("%-4d %-30s %10.2f %12.0f\n", i, "cp --sparse + sync", d.Seconds(), mib(int64(size), d))
		if cpBest == 0 || d < cpBest {
			cpBest = d
		}
		for _, mode := range modes {
			var prof []string
			if *cpuprofile != "" && i == *runs && mode.flag == modes[0].flag {
				prof = []string{"--cpuprofile", *cpuprofile}
			}
			r, err := publishOnce(bin, work, vm, mode.flag, prof)
			if err != nil {
				return err
			}
			compressed := "-"
			if r.compressed > 0 {
				compressed = fmt.Sprintf("%.2fs after", r.compressed.Seconds())
			}
			fmt.Printf("%-4d %-30s %10.2f %12.0f %16s %16s %12s %14s\n", i, mode.name, r.took.Seconds(), mib(int64(size), r.took),
				humanize.IBytes(uint64(r.peak)), humanize.IBytes(uint64(r.anon)), humanize.IBytes(uint64(r.store)), compressed)
			if b, ok := best[mode.flag]; !ok || r.took < b {
				best[mode.flag] = r.took
			}
			peakMax = max(peakMax, r.peak)
			anonMax = max(anonMax, r.anon)
		}
	}
	fmt.Printf("\nbest of %d: cp %.2fs, publish %.2fs; publish/cp throughput ratio %.2f (goal >= 0.5)\n",
		*runs, cpBest.Seconds(), best[modes[0].flag].Seconds(), cpBest.Seconds()/best[modes[0].flag].Seconds())
	fmt.Printf("with --compress=yes (compressed by the client, as over a slow link): publish %.2fs, ratio %.2f\n",
		best[modes[1].flag].Seconds(), cpBest.Seconds()/best[modes[1].flag].Seconds())
	fmt.Printf("server peak memory: VmHWM %s (counts mapped file pages), anonymous %s\n",
		humanize.IBytes(uint64(peakMax)), humanize.IBytes(uint64(anonMax)))
	return nil
}

// publishResult is one measured publish.
type publishResult struct {
	took       time.Duration // until the publish command returned
	compressed time.Duration // from then until the server had compressed what came uncompressed
	peak, anon int64         // the server's VmHWM and peak anonymous memory
	store      int64         // the server's disk use at the end
}

var compressedRE = regexp.MustCompile(`msg="compressed deferred blocks".* done=true`)

// publishOnce publishes vm into a fresh server, page cache dropped first,
// with the publish flag given; prof adds --cpuprofile FILE.server and
// FILE.client.
func publishOnce(bin, work, vm, flag string, prof []string) (publishResult, error) {
	var r publishResult
	data := filepath.Join(work, "server")
	defer os.RemoveAll(data)
	var srvArgs, pubArgs []string
	if len(prof) == 2 {
		srvArgs = []string{prof[0], prof[1] + ".server"}
		pubArgs = []string{prof[0], prof[1] + ".client"}
	}
	srv, err := startServer(bin, data, srvArgs...)
	if err != nil {
		return r, err
	}
	defer srv.stop()
	if err := dropCaches(); err != nil {
		return r, err
	}
	stopWatch := memWatch(srv.cmd.Process.Pid)
	start := time.Now()
	_, _, err = run([]string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}, bin,
		append(pubArgs, "template", "publish", "--name", "bench", flag, vm)...)
	end := time.Now()
	r.took = end.Sub(start)
	if err != nil {
		stopWatch()
		return r, err
	}
	if flag != "--compress=yes" {
		done, err := srv.waitLog(compressedRE, 5*time.Minute)
		if err != nil {
			stopWatch()
			return r, err
		}
		// Compression starts once uploads have been idle for
		// repo.DefaultCompressIdle (2 s), and counts in this.
		r.compressed = done.Sub(end)
	}
	r.anon = stopWatch()
	if r.peak, err = procStatus(srv.cmd.Process.Pid, "VmHWM"); err != nil {
		return r, err
	}
	r.store, err = dirUse(filepath.Join(data, "store"))
	return r, err
}
