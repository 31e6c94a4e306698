//go:build !linux

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newLoopbackCmd is the benchmarks' reference mount, a go-fuse loopback:
// Linux only, as the benchmarks are.
func newLoopbackCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:    "bench-loopback DIR MOUNTPOINT",
		Short:  "Mount a go-fuse loopback of DIR (benchmark reference; Linux only)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(*cobra.Command, []string) error {
			return errors.New("bench-loopback is go-fuse's loopback, which runs on Linux only")
		},
	}
}
