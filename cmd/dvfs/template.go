package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dvfs-project/dvfs/sync/export"
	"github.com/dvfs-project/dvfs/sync/publish"
)

func newTemplateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Publish, list, show and remove templates"}
	cmd.AddCommand(newPublishCmd(g), newListCmd(g), newShowCmd(g), newRmCmd(g), newGCCmd(g), newExportCmd(g), newPushCmd(g))
	return cmd
}

func newPublishCmd(g *globals) *cobra.Command {
	var name, compress string
	var blockSize int
	cmd := &cobra.Command{
		Use:   "publish --name NAME DIR",
		Short: "Import a directory (a VM folder) as the template's next version",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			cfg := publish.Config{Server: c, Name: name, Dir: args[0], BlockSize: blockSize, Logger: g.log}
			switch compress {
			case "auto":
				cfg.Deferred = c.OnThisMachine(cmd.Context())
			case "yes":
			case "no":
				cfg.Deferred = true
			default:
				return fmt.Errorf("--compress %q: want auto, yes or no", compress)
			}
			var bar *progressbar.ProgressBar
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions64(-1,
					progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("publishing "+name),
					progressbar.OptionShowBytes(true),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(200*time.Millisecond),
					progressbar.OptionClearOnFinish())
				cfg.Progress = func(p publish.Progress) {
					bar.ChangeMax64(p.TotalBytes)
					_ = bar.Set64(p.DoneBytes)
				}
			}
			start := time.Now()
			res, err := publish.Publish(cmd.Context(), cfg)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			elapsed := time.Since(start)
			fmt.Printf("published %s@%d: %d files, %s in %s (%s/s)\n", res.Info.Name, res.Info.Version,
				res.Files, humanize.IBytes(uint64(res.Bytes)), elapsed.Round(time.Millisecond),
				humanize.IBytes(uint64(float64(res.Bytes)/elapsed.Seconds())))
			how := "compressed"
			if res.Deferred {
				how = "uncompressed; the server compresses them when idle"
			}
			fmt.Printf("  new:    %d blocks, %s (%s sent %s)\n", res.NewBlocks,
				humanize.IBytes(uint64(res.NewBytes)), humanize.IBytes(uint64(res.SentBytes)), how)
			fmt.Printf("  reused: %d blocks already on the server\n", res.ReusedBlocks)
			fmt.Printf("  holes:  %d blocks of zeros, stored nowhere\n", res.HoleBlocks)
			if res.ResentBlocks > 0 {
				fmt.Printf("  resent: %d blocks a server had taken and lost before storing\n", res.ResentBlocks)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "template name")
	cmd.Flags().IntVar(&blockSize, "block-size", 0, "block size in bytes (default 64 KiB)")
	cmd.Flags().StringVar(&compress, "compress", "auto", "compress blocks before sending them: yes, no (the server compresses them when idle), or auto (no when the server is on this machine)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List templates and their versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			list, err := c.Templates(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TEMPLATE\tVERSION\tCREATED\tFILES\tSIZE\tBLOCKS")
			for _, t := range list {
				for _, v := range t.Versions {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\n", t.Name, v.Version,
						v.Created.Local().Format(time.DateTime), v.Files, humanize.IBytes(uint64(v.Bytes)), v.Blocks)
				}
			}
			return tw.Flush()
		},
	}
}

func newShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME[@VERSION]",
		Short: "Show a template version and its files (verified against the server's key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, v, err := parseRef(args[0])
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			m, _, err := c.Manifest(cmd.Context(), name, v)
			if err != nil {
				return err
			}
			st := m.Stats()
			fmt.Printf("template %s@%d (parent %d), created %s\n", m.Name, m.Version, m.Parent, m.Created.Local().Format(time.DateTime))
			fmt.Printf("%d files, %s, %d data blocks of %s, %d holes\n", st.Files, humanize.IBytes(uint64(st.Bytes)),
				st.Blocks, humanize.IBytes(uint64(m.BlockSize)), st.HoleBlocks)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODE\tSIZE\tMODIFIED\tPATH")
			for _, f := range m.Files {
				path := f.Path
				if f.Target != "" {
					path += " -> " + f.Target
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", f.Mode, f.Size, f.MTime.Local().Format(time.DateTime), path)
			}
			return tw.Flush()
		},
	}
}

func newRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME[@VERSION]",
		Short: "Remove a template version (or every version) and free its unshared blocks",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, v, err := parseRef(args[0])
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			res, err := c.Remove(cmd.Context(), name, v)
			if err != nil {
				return err
			}
			fmt.Printf("removed %s; garbage collection deleted %d blocks, kept %d\n", args[0], res.Deleted, res.Kept)
			return nil
		},
	}
}

func newGCCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Delete blocks no template version uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			res, err := c.GC(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("deleted %d blocks, kept %d, spared %d recent uploads\n", res.Deleted, res.Kept, res.Skipped)
			return nil
		},
	}
}

func newExportCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "export NAME[@VERSION] DIR",
		Short: "Write a template version out as a directory (sparse, every block verified)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, v, err := parseRef(args[0])
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			m, _, err := c.Manifest(cmd.Context(), name, v)
			if err != nil {
				return err
			}
			if err := export.Export(cmd.Context(), c, m, args[1]); err != nil {
				return err
			}
			fmt.Printf("exported %s@%d to %s\n", m.Name, m.Version, args[1])
			return nil
		},
	}
}

func newPushCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "push NAME[@VERSION]",
		Short: "Send a template version to every workstation by multicast (each receives only the blocks it lacks)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, v, err := parseRef(args[0])
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			s, err := c.Push(cmd.Context(), name, v)
			if err != nil {
				return err
			}
			fmt.Printf("multicast session %d queued: %s@%d to %s\n", s.ID, s.Template, s.Version, s.Group)
			return nil
		},
	}
}
