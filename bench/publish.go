package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
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
	work, err := os.MkdirTemp(*dir, "dvfs-bench-publish")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := buildDvfs(work)
	if err != nil {
		return err
	}
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

	fmt.Printf("%-4s %-22s %10s %12s %16s %16s\n", "run", "what", "seconds", "MiB/s", "server VmHWM", "server anon peak")
	var cpBest, pubBest time.Duration
	var peakMax, anonMax int64
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
		fmt.Printf("%-4d %-22s %10.2f %12.0f\n", i, "cp --sparse + sync", d.Seconds(), mib(int64(size), d))
		if cpBest == 0 || d < cpBest {
			cpBest = d
		}

		data := filepath.Join(work, fmt.Sprintf("server%d", i))
		var srvArgs, pubArgs []string
		if *cpuprofile != "" && i == *runs {
			srvArgs = []string{"--cpuprofile", *cpuprofile + ".server"}
			pubArgs = []string{"--cpuprofile", *cpuprofile + ".client"}
		}
		srv, err := startServer(bin, data, srvArgs...)
		if err != nil {
			return err
		}
		if err := dropCaches(); err != nil {
			return err
		}
		stopWatch := memWatch(srv.cmd.Process.Pid)
		d, _, err = run([]string{"DVFS_SERVER=" + srv.url, "DVFS_TOKEN=" + srv.token}, bin, append(pubArgs, "template", "publish", "--name", "bench", vm)...)
		anon := stopWatch()
		peak, perr := procStatus(srv.cmd.Process.Pid, "VmHWM")
		srv.stop()
		os.RemoveAll(data)
		if err != nil {
			return err
		}
		if perr != nil {
			return perr
		}
		fmt.Printf("%-4d %-22s %10.2f %12.0f %16s %16s\n", i, "dvfs template publish", d.Seconds(), mib(int64(size), d),
			humanize.IBytes(uint64(peak)), humanize.IBytes(uint64(anon)))
		if pubBest == 0 || d < pubBest {
			pubBest = d
		}
		peakMax = max(peakMax, peak)
		anonMax = max(anonMax, anon)
	}
	fmt.Printf("\nbest of %d: cp %.2fs, publish %.2fs; publish/cp throughput ratio %.2f (goal >= 0.5)\n",
		*runs, cpBest.Seconds(), pubBest.Seconds(), cpBest.Seconds()/pubBest.Seconds())
	fmt.Printf("server peak memory: VmHWM %s (counts mapped file pages), anonymous %s\n",
		humanize.IBytes(uint64(peakMax)), humanize.IBytes(uint64(anonMax)))
	return nil
}
