package main

import (
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// defaultAdapter on Linux is go-fuse: it needs no cgo, and it has lseek
// and fallocate, which cgofuse lacks (DESIGN.md).
const defaultAdapter = "gofuse"

func init() {
	adapters["gofuse"] = func(mountpoint string, core *fs.FS, o adapterOptions) (mountServer, error) {
		return gofuse.Mount(mountpoint, core, gofuse.Options{AllowOther: o.allowOther, Debug: o.debug, Logger: o.log, Observe: o.observe, ReadAhead: o.readAhead})
	}
}
