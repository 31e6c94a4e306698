//go:build linux

package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// benchSparse copies a clone's mostly-empty VM disk with the tools that
// skip holes (cp --sparse=always, qemu-img convert, tar -S), and the same
// file on the local disk with the same tools: the time, the bytes each
// tool read and wrote, what its output takes on disk, and, for the clone,
// the bytes the mount itself read. A tool that finds the holes reads and
// writes only the data, wherever the file lives.
func benchSparse(args []string) error {
	fl := flag.NewFlagSet("sparse", flag.ExitOnError)
	sizeStr := fl.String("size", "20GiB", "the disk's size")
	dataStr := fl.String("data", "64MiB", "the template's data in it, in 1 MiB extents spread over the disk")
	writeStr := fl.String("write", "4MiB", "what the clone then writes into it, at its middle")
	dir := fl.String("dir", "/var/tmp", "scratch directory")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	data, err := humanize.ParseBytes(*dataStr)
	if err != nil {
		return err
	}
	wsize, err := humanize.ParseBytes(*writeStr)
	if err != nil {
		return err
	}
	work, bin, cleanup, err := workspace(*dir, "sparse")
	if err != nil {
		return err
	}
	defer cleanup()
	tpl := filepath.Join(work, "tpl")
	os.Mkdir(tpl, 0o755)
	local := filepath.Join(tpl, "disk.vmdk")
	fmt.Printf("writing a %s disk with %s of data\n", humanize.IBytes(size), humanize.IBytes(data))
	if err := writeSparseDisk(local, int64(size), int64(data)); err != nil {
		return err
	}
	srv, env, err := serveTemplate(bin, filepath.Join(work, "server"), tpl, "sparse", "sp")
	if err != nil {
		return err
	}
	defer srv.stop()
	mnt := filepath.Join(work, "mnt")
	os.Mkdir(mnt, 0o755)
	dv, err := startDaemon(env, mnt, bin, "mount", "--cache", filepath.Join(work, "cache"), mnt)
	if err != nil {
		return err
	}
	defer dv.stop()
	clone := filepath.Join(mnt, "clones", "sp", "disk.vmdk")
	// The same write into both: the clone then has local sectors over
	// its template's holes.
	patch := filepath.Join(work, "patch")
	if err := writeRandom(patch, int64(wsize)); err != nil {
		return err
	}
	for _, p := range []string{local, clone} {
		if _, _, err := run(nil, "dd", "if="+patch, "of="+p, "bs=1M", fmt.Sprintf("seek=%d", size/2>>20), "conv=notrunc,fsync", "status=none"); err != nil {
			return err
		}
	}
	// Warm the template's blocks into the cache, as a workstation that
	// ran the VM has them: the rows measure the copy, not the fetch.
	if _, _, err := run(nil, "cp", "--sparse=always", clone, filepath.Join(work, "warm")); err != nil {
		return err
	}
	os.Remove(filepath.Join(work, "warm"))
	tools := []struct {
		name string
		cmd  func(src, dst string) string
	}{
		{"cp --sparse=always", func(src, dst string) string { return fmt.Sprintf("cp --sparse=always %q %q", src, dst) }},
		{"qemu-img convert -O raw", func(src, dst string) string { return fmt.Sprintf("qemu-img convert -f raw -O raw %q %q", src, dst) }},
		{"tar -S -cf", func(src, dst string) string {
			return fmt.Sprintf("tar -S -C %q -cf %q %q", filepath.Dir(src), dst, filepath.Base(src))
		}},
	}
	fmt.Printf("\n| tool | file | time (s) | the tool read | wrote | output on disk | the mount read | time vs local |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, tool := range tools {
		var ref time.Duration
		var outs []string
		for _, src := range []struct{ where, path string }{{"local disk", local}, {"clone", clone}} {
			dst := filepath.Join(work, "out-"+strings.Fields(tool.name)[0]+"-"+strings.Fields(src.where)[0])
			if err := dropCaches(); err != nil {
				return err
			}
			mount0, _ := procIO(dv.pid(), "rchar")
			d, out, err := run(nil, "sh", "-c", tool.cmd(src.path, dst)+"; cat /proc/$$/io")
			if err != nil {
				return err
			}
			mount1, _ := procIO(dv.pid(), "rchar")
			use, err := dirUse(dst)
			if err != nil {
				return err
			}
			mountRead := "-"
			if src.where == "clone" {
				mountRead = humanize.IBytes(uint64(mount1 - mount0))
			} else {
				ref = d
			}
			fmt.Printf("| %s | %s | %.2f | %s | %s | %s | %s | %.2f |\n", tool.name, src.where, d.Seconds(),
				humanize.IBytes(uint64(ioField(out, "rchar"))), humanize.IBytes(uint64(ioField(out, "wchar"))),
				humanize.IBytes(uint64(use)), mountRead, d.Seconds()/ref.Seconds())
			outs = append(outs, dst)
		}
		// The copies must be the same bytes (and the tar archives the
		// same members).
		if strings.HasPrefix(tool.name, "tar") {
			if _, out, err := run(nil, "bash", "-c", fmt.Sprintf("cmp <(tar -xOf %q) <(tar -xOf %q)", outs[0], outs[1])); err != nil {
				return fmt.Errorf("%s: the two archives differ: %v %s", tool.name, err, out)
			}
		} else if _, out, err := run(nil, "cmp", outs[0], outs[1]); err != nil {
			return fmt.Errorf("%s: the two copies differ: %v %s", tool.name, err, out)
		}
		for _, o := range outs {
			os.Remove(o)
		}
	}
	return nil
}

// writeSparseDisk writes a file of size bytes holding data bytes of random
// data in 1 MiB extents spread evenly over it, the rest holes.
func writeSparseDisk(path string, size, data int64) error {
	f, err := createSized(path, size)
	if err != nil {
		return err
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{7})
	buf := make([]byte, 1<<20)
	n := max(data>>20, 1)
	step := size / n &^ (1<<20 - 1)
	for i := int64(0); i < n; i++ {
		src.Read(buf)
		if _, err := f.WriteAt(buf, i*step); err != nil {
			return err
		}
	}
	return f.Sync()
}

// procIO reads a field of /proc/PID/io.
func procIO(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	return ioField(string(b), field), nil
}

// ioField finds "field: N" in text such as /proc/PID/io.
func ioField(text, field string) int64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
