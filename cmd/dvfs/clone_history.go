package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/api"
	exportpkg "github.com/dvfs-project/dvfs/sync/export"
	"github.com/dvfs-project/dvfs/sync/writeback"
)

// holderName is how this workstation (for a given cache) signs its leases.
func holderName(cacheDir string) string {
	host, _ := os.Hostname()
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		abs = cacheDir
	}
	return writeback.HolderName(host, abs)
}

func newCloneHistoryCmds(g *globals) []*cobra.Command {
	var cacheDir string
	takeover := &cobra.Command{
		Use:   "takeover --cache DIR CLONE",
		Short: "Take a clone's lease from another workstation (its unsynced changes become a conflict clone)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			l, err := c.AcquireLease(cmd.Context(), args[0], holderName(cacheDir), time.Minute, true)
			if err != nil {
				return err
			}
			fmt.Printf("took over clone %s (epoch %d); the mount using %s may write it now\n", args[0], l.Epoch, cacheDir)
			return nil
		},
	}
	takeover.Flags().StringVar(&cacheDir, "cache", "", "the cache directory of this workstation's mount")
	_ = takeover.MarkFlagRequired("cache")

	snapshot := &cobra.Command{
		Use:   "snapshot CLONE NAME",
		Short: "Name the clone's latest committed generation",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			si, err := c.Snapshot(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			fmt.Printf("snapshot %s of %s is generation %d\n", si.Name, args[0], si.Generation)
			return nil
		},
	}
	revert := &cobra.Command{
		Use:   "revert CLONE NAME",
		Short: "Make a snapshot's tree the clone's next generation (the clone must not be open elsewhere)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			name, snap := args[0], args[1]
			// The snapshot must exist before the clone is leased.
			h, err := c.History(ctx, name)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(h.Snapshots, func(s api.SnapshotInfo) bool { return s.Name == snap }) {
				return fmt.Errorf("clone %s has no snapshot %q (dvfs clone history %s lists them)", name, snap, name)
			}
			// The revert holds the clone's lease only while it runs: taken
			// here (refused while a workstation has the clone), renewed by
			// the server's revert, given back whatever happens, so the
			// next mount may write the clone at once.
			host, _ := os.Hostname()
			holder := "dvfs-revert@" + host
			l, err := c.AcquireLease(ctx, name, holder, time.Minute, false)
			if err != nil {
				return fmt.Errorf("clone %s: %w", name, err)
			}
			defer func() {
				if err := c.ReleaseLease(context.WithoutCancel(ctx), name, holder, l.Epoch); err != nil {
					fmt.Fprintf(os.Stderr, "clone %s stays leased to %s until %s: %v\n", name, holder, l.Expires.Local().Format(time.DateTime), err)
				}
			}()
			info, err := c.Revert(ctx, name, snap, holder)
			if err != nil {
				return err
			}
			fmt.Printf("clone %s reverted to snapshot %s as generation %d\n", args[0], args[1], info.Generation)
			return nil
		},
	}
	history := &cobra.Command{
		Use:   "history CLONE",
		Short: "List a clone's generations and snapshots",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			h, err := c.History(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Printf("clone %s of %s@%d, generation %d\n", h.Clone.Name, h.Clone.Template, h.Clone.TemplateVersion, h.Clone.Generation)
			if h.Lease != nil {
				fmt.Printf("lease: %s (epoch %d) until %s\n", h.Lease.Holder, h.Lease.Epoch, h.Lease.Expires.Local().Format(time.DateTime))
			}
			snaps := map[uint64][]string{}
			for _, s := range h.Snapshots {
				snaps[s.Generation] = append(snaps[s.Generation], s.Name)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GENERATION\tCREATED\tSIZE\tBLOCKS\tSNAPSHOTS")
			for _, gi := range h.Generations {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%v\n", gi.Generation, gi.Created.Local().Format(time.DateTime),
					humanize.IBytes(uint64(gi.Bytes)), gi.Blocks, snaps[gi.Generation])
			}
			return tw.Flush()
		},
	}
	export := &cobra.Command{
		Use:   "export CLONE DIR",
		Short: "Write a clone's latest committed generation out as a directory (sparse, every block verified)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			m, _, err := c.CloneManifest(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := exportpkg.Export(cmd.Context(), c, m, args[1]); err != nil {
				return err
			}
			fmt.Printf("exported clone %s generation %d to %s\n", args[0], m.Version, args[1])
			return nil
		},
	}
	return []*cobra.Command{takeover, snapshot, revert, history, export}
}
