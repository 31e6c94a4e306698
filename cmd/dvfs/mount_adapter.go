package main

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/cgofuse"
)

// mountServer is a mount being served, by either adapter.
type mountServer interface {
	// Unmount unmounts and waits for the serving to end.
	Unmount() error
	// Wait blocks until the filesystem is unmounted.
	Wait()
}

// adapterOptions are what dvfs mount tells an adapter.
type adapterOptions struct {
	allowOther bool         // --allow-other
	debug      bool         // --debug-fuse
	log        *slog.Logger // the mount's log
	// observe, if set, gets each request's operation and latency
	// (the metrics' histograms); the gofuse adapter reports them.
	observe func(op string, d time.Duration)
	// readAhead is the kernel's readahead for the mount in bytes
	// (--readahead), -1 for the kernel's default.
	readAhead int
}

// adapters are the FUSE adapters a mount can serve through (--fuse); the
// OS's files add theirs.
var adapters = map[string]func(mountpoint string, core *fs.FS, o adapterOptions) (mountServer, error){
	"cgofuse": func(mountpoint string, core *fs.FS, o adapterOptions) (mountServer, error) {
		if !cgofuse.Available {
			return nil, fmt.Errorf("--fuse cgofuse: %w", cgofuse.ErrUnavailable)
		}
		return cgofuse.Mount(mountpoint, core, cgofuse.Options{AllowOther: o.allowOther, Debug: o.debug, Logger: o.log, ReadAhead: o.readAhead})
	},
}

// addAdapterFlag registers --fuse.
func addAdapterFlag(f *pflag.FlagSet, adapter *string) {
	names := make([]string, 0, len(adapters))
	for n := range adapters {
		names = append(names, n)
	}
	slices.Sort(names)
	f.StringVar(adapter, "fuse", defaultAdapter, "the FUSE adapter to serve through: "+strings.Join(names, " or "))
}

// mountAdapter mounts core at mountpoint through the adapter named name.
func mountAdapter(name, mountpoint string, core *fs.FS, o adapterOptions) (mountServer, error) {
	m, ok := adapters[name]
	if !ok {
		return nil, fmt.Errorf("--fuse %q: no such adapter", name)
	}
	return m(mountpoint, core, o)
}
