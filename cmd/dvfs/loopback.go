//go:build linux

package main

import (
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// newLoopbackCmd is the benchmarks' reference mount (bench/): a plain
// go-fuse loopback, with kernel passthrough off unless --passthrough.
// Hidden: not for users.
func newLoopbackCmd(g *globals) *cobra.Command {
	var passthrough bool
	cmd := &cobra.Command{
		Use:    "bench-loopback DIR MOUNTPOINT",
		Short:  "Mount a go-fuse loopback of DIR, every request through the daemon (benchmark reference)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srv, err := gofuse.MountLoopback(args[0], args[1], passthrough)
			if err != nil {
				return err
			}
			g.log.Info("mounted", "mountpoint", args[1])
			done := make(chan struct{})
			go func() { srv.Wait(); close(done) }()
			select {
			case <-cmd.Context().Done():
				return srv.Unmount()
			case <-done:
				return nil
			}
		},
	}
	cmd.Flags().BoolVar(&passthrough, "passthrough", false, "let the kernel read and write the files in DIR itself (FUSE passthrough)")
	return cmd
}
