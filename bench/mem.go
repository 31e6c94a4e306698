//go:build linux

package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dustin/go-humanize"
)

// benchMem reports the mount's memory while it serves a large template:
// publish a template of -size (every 64 KiB block distinct, so the manifest
// is full size, but compressible, so the disks stay small), mount it with
// an empty cache, read the whole file through the mount, and sample the
// mount's anonymous memory throughout.
func benchMem(args []string) error {
	fl := flag.NewFlagSet("mem", flag.ExitOnError)
	sizeStr := fl.String("size", "20GiB", "template size")
	dir := fl.String("dir", "/var/tmp", "scratch directory")
	fl.Parse(args)
	size, err := humanize.ParseBytes(*sizeStr)
	if err != nil {
		return err
	}
	work, bin, cleanup, err := workspace(*dir, "mem")
	if err != nil {
		return err
	}
	defer cleanup()
	tpl := filepath.Join(work, "tpl")
	os.Mkdir(tpl, 0o755)
	fmt.Printf("writing a %s template of distinct, compressible blocks\n", humanize.IBytes(size))
	if err := writeDistinctBlocks(filepath.Join(tpl, "disk.vmdk"), int64(size)); err != nil {
		return err
	}
	srv, env, err := serveTemplate(bin, filepath.Join(work, "server"), tpl, "big", "")
	if err != nil {
		return err
	}
	defer srv.stop()
	os.RemoveAll(tpl) // free the disk: the server has it
	mnt := filepath.Join(work, "mnt")
	os.Mkdir(mnt, 0o755)
	dv, err := startDaemon(env, mnt, bin, "mount", "--cache", filepath.Join(work, "cache"), mnt)
	if err != nil {
		return err
	}
	defer dv.stop()
	idle, _ := procStatus(dv.pid(), "RssAnon")
	stopWatch := memWatch(dv.pid())
	d, _, err := run(nil, "dd", "if="+filepath.Join(mnt, "templates", "big", "disk.vmdk"), "of=/dev/null", "bs=1M")
	anon := stopWatch()
	if err != nil {
		return err
	}
	hwm, _ := procStatus(dv.pid(), "VmHWM")
	fmt.Printf("\nread %s through the mount (cold cache, server on loopback) in %s: %.0f MiB/s\n",
		humanize.IBytes(size), d.Round(time.Millisecond), mib(int64(size), d))
	fmt.Printf("mount memory: anonymous %s at rest after mounting, %s peak while reading; VmHWM %s (counts mapped cache files)\n",
		humanize.IBytes(uint64(idle)), humanize.IBytes(uint64(anon)), humanize.IBytes(uint64(hwm)))
	return nil
}

// writeDistinctBlocks writes size bytes in which every 64 KiB block differs
// (its index leads it) but compresses well.
func writeDistinctBlocks(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const bs = 64 << 10
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = "dvfs template block "[i%20]
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		for b := int64(0); b < n; b += bs {
			binary.LittleEndian.PutUint64(buf[b:], uint64(off+b))
		}
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
	}
	return f.Sync()
}
