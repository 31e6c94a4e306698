//go:build linux

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// A fio workload.
type workload struct {
	name  string
	rw    string // fio --rw
	bs    string
	write bool
}

var workloads = []workload{
	{"seq read 1M", "read", "1M", false},
	{"rand read 4K", "randread", "4k", false},
	{"rand read 64K", "randread", "64k", false},
	{"seq write 1M", "write", "1M", true},
	{"rand write 4K", "randwrite", "4k", true},
	{"rand write 64K", "randwrite", "64k", true},
}

// A target is a file fio runs against.
type target struct {
	name     string
	path     string
	readOnly bool
}

// benchFio runs fio against the native disk, a go-fuse loopback with
// every request through the daemon, and, through each FUSE adapter in
// turn (dvfs mount --fuse), a dvfs template file (cached) and a dvfs
// clone file, all on one 2 GiB file of random data, the page cache
// dropped before each workload; then a cold read through a fresh cache.
func benchFio(args []string) error {
	fl := flag.NewFlagSet("fio", flag.ExitOnError)
	sizeStr := fl.String("size", "2GiB", "file size")
	dir := fl.String("dir", "/var/tmp", "scratch directory (on the disk measured)")
	runtime := fl.Duration("runtime", 10*time.Second, "time per workload and target (0: one pass over the file)")
	only := fl.String("only", "", "run only the workloads whose name matches this regular expression")
	fuseList := fl.String("fuse", "gofuse,cgofuse", "the FUSE adapters to measure dvfs through, in turn (cgofuse needs cgo and libfuse3-dev)")
	profDir := fl.String("cpuprofile", "", "write each adapter's dvfs mount CPU profile (pprof) to DIR/ADAPTER.prof")
	fl.Parse(args)
	onlyRe, err := regexp.Compile(*only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}
	adapters := strings.Split(*fuseList, ",")
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("fio"); err != nil {
		return fmt.Errorf("fio is not installed (apt-get install fio)")
	}
	work, bin, cleanup, err := workspace(*dir, "fio")
	if err != nil {
		return err
	}
	defer cleanup()
	if slices.Contains(adapters, "cgofuse") {
		// The cgofuse adapter is built with libfuse3's headers only.
		if out, err := exec.Command("go", "build", "-tags", "fuse3", "-o", bin, "./cmd/dvfs").CombinedOutput(); err != nil {
			return fmt.Errorf("go build -tags fuse3: %v\n%s", err, out)
		}
	}
	native := filepath.Join(work, "native")
	os.Mkdir(native, 0o755)
	img := filepath.Join(native, "disk.img")
	fmt.Printf("writing %s of random data\n", humanize.IBytes(size))
	if err := writeRandom(img, int64(size)); err != nil {
		return err
	}

	srv, env, err := serveTemplate(bin, filepath.Join(work, "server"), native, "fio", "fioclone")
	if err != nil {
		return err
	}
	defer srv.stop()
	lmnt := filepath.Join(work, "lmnt")
	os.Mkdir(lmnt, 0o755)
	loop, err := startDaemon(nil, lmnt, bin, "bench-loopback", native, lmnt)
	if err != nil {
		return err
	}
	defer loop.stop()

	results := map[string]map[string]fioResult{}
	var chosen []workload
	for _, w := range workloads {
		if onlyRe.MatchString(w.name) {
			chosen = append(chosen, w)
			results[w.name] = map[string]fioResult{}
		}
	}
	measure := func(targets []target) error {
		for _, w := range chosen {
			for _, t := range targets {
				if w.write && t.readOnly {
					continue
				}
				if err := dropCaches(); err != nil {
					return err
				}
				r, err := runFio(t.path, w, int64(size), *runtime)
				if err != nil {
					return fmt.Errorf("%s on %s: %w", w.name, t.name, err)
				}
				results[w.name][t.name] = r
				fmt.Printf("  %-15s %-16s %9.1f MiB/s %9.0f IOPS\n", w.name, t.name, r.mibps, r.iops)
			}
		}
		return nil
	}
	if err := measure([]target{{"native", img, false}, {"loopback", filepath.Join(lmnt, "disk.img"), false}}); err != nil {
		return err
	}
	// One adapter at a time, on one cache: the clone is the same clone,
	// synced by each mount as it stops.
	for _, a := range adapters {
		mnt := filepath.Join(work, "mnt-"+a)
		os.Mkdir(mnt, 0o755)
		margs := []string{"mount", "--fuse", a, "--cache", filepath.Join(work, "cache"), mnt}
		if *profDir != "" {
			margs = append(margs, "--cpuprofile", filepath.Join(*profDir, a+".prof"))
		}
		dv, err := startDaemon(env, mnt, bin, margs...)
		if err != nil {
			return fmt.Errorf("mount --fuse %s: %w", a, err)
		}
		tmplPath := filepath.Join(mnt, "templates", "fio", "disk.img")
		fmt.Printf("%s: warming the dvfs cache (reading the template once)\n", a)
		err = readAll(tmplPath)
		if err == nil {
			err = measure([]target{{a + " template", tmplPath, true}, {a + " clone", filepath.Join(mnt, "clones", "fioclone", "disk.img"), false}})
		}
		dv.stop()
		if err != nil {
			return err
		}
	}

	fmt.Printf("\ncold read through %s: a fresh cache, blocks fetched from the server on loopback\n", adapters[0])
	cold := filepath.Join(work, "mnt-cold")
	os.Mkdir(cold, 0o755)
	dv2, err := startDaemon(env, cold, bin, "mount", "--fuse", adapters[0], "--cache", filepath.Join(work, "cache-cold"), cold)
	if err != nil {
		return err
	}
	if err := dropCaches(); err != nil {
		return err
	}
	coldRes, err := runFio(filepath.Join(cold, "templates", "fio", "disk.img"), workload{"cold seq read 1M", "read", "1M", false}, int64(size), 0)
	dv2.stop()
	if err != nil {
		return err
	}

	cols := []string{"native", "loopback"}
	for _, a := range adapters {
		cols = append(cols, a+" template", a+" clone")
	}
	fmt.Printf("\n%-15s", "workload")
	for _, c := range cols {
		fmt.Printf(" %16s", c)
	}
	for _, c := range cols[2:] {
		fmt.Printf(" %16s", strings.Replace(c, " template", " tmpl", 1)+"/lb")
	}
	fmt.Println()
	for _, w := range chosen {
		r := results[w.name]
		unit := func(x fioResult) float64 { return x.mibps }
		if strings.HasPrefix(w.name, "rand") {
			unit = func(x fioResult) float64 { return x.iops }
		}
		fmt.Printf("%-15s", w.name)
		for _, c := range cols {
			if x, ok := r[c]; ok {
				fmt.Printf(" %16.0f", unit(x))
			} else {
				fmt.Printf(" %16s", "-")
			}
		}
		for _, c := range cols[2:] {
			if x, ok := r[c]; ok {
				fmt.Printf(" %16.2f", unit(x)/unit(r["loopback"]))
			} else {
				fmt.Printf(" %16s", "-")
			}
		}
		fmt.Println()
	}
	fmt.Println("(sequential rows in MiB/s, random rows in IOPS; /lb: the ratio to the loopback)")
	fmt.Printf("cold sequential read through an empty cache: %.0f MiB/s", coldRes.mibps)
	if n, ok := results["seq read 1M"]["native"]; ok {
		fmt.Printf(" (%.2f of native's cached-disk read)", coldRes.mibps/n.mibps)
	}
	fmt.Println()
	return nil
}

// readAll reads the file at path once and drops the bytes. (Warming by
// running cat kept its whole output: the harness grew to 8 GiB resident
// and spent a core on it while the first workload ran.)
func readAll(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

type fioResult struct{ mibps, iops float64 }

// runFio runs one fio job; runtime 0 means one pass over the file.
func runFio(path string, w workload, size int64, runtime time.Duration) (fioResult, error) {
	args := []string{"--name=bench", "--filename=" + path, "--rw=" + w.rw, "--bs=" + w.bs,
		fmt.Sprintf("--size=%d", size), "--ioengine=psync", "--iodepth=1", "--numjobs=1",
		"--invalidate=1", "--randrepeat=0", "--output-format=json"}
	if runtime > 0 {
		args = append(args, "--time_based", fmt.Sprintf("--runtime=%ds", int(runtime.Seconds())))
	}
	if w.write {
		// Count the flush: a write is not done while it sits in a cache.
		args = append(args, "--end_fsync=1")
	}
	out, err := exec.Command("fio", args...).Output()
	if err != nil {
		return fioResult{}, fmt.Errorf("fio: %v\n%s", err, out)
	}
	var rep struct {
		Jobs []struct {
			Read, Write struct {
				BW   float64 `json:"bw_bytes"`
				IOPS float64 `json:"iops"`
			}
		}
	}
	if err := json.Unmarshal(out[strings.IndexByte(string(out), '{'):], &rep); err != nil || len(rep.Jobs) == 0 {
		return fioResult{}, fmt.Errorf("fio output: %v", err)
	}
	j := rep.Jobs[0]
	side := j.Read
	if w.write {
		side = j.Write
	}
	return fioResult{mibps: side.BW / (1 << 20), iops: side.IOPS}, nil
}

// writeRandom writes size bytes of random data and syncs them.
func writeRandom(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{'f', 'i', 'o'})
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		src.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
	}
	return f.Sync()
}
