package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/clones"
)

func newCloneCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "clone", Short: "Create, list and remove your linked clones"}
	var template string
	create := &cobra.Command{
		Use:   "create --template NAME[@VERSION] CLONE",
		Short: "Make a linked clone of a template (instant: nothing is copied)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, v, err := parseRef(template)
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			info, err := clones.Create(cmd.Context(), c, name, v, args[0])
			if err != nil {
				return err
			}
			fmt.Printf("created clone %s of %s@%d\n", info.Name, info.Template, info.TemplateVersion)
			return nil
		},
	}
	create.Flags().StringVar(&template, "template", "", "template to clone, NAME or NAME@VERSION")
	_ = create.MarkFlagRequired("template")

	list := &cobra.Command{
		Use:   "list",
		Short: "List your clones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			list, err := c.Clones(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLONE\tTEMPLATE\tGENERATION\tSIZE\tUPDATED")
			for _, cl := range list {
				fmt.Fprintf(tw, "%s\t%s@%d\t%d\t%s\t%s\n", cl.Name, cl.Template, cl.TemplateVersion,
					cl.Generation, humanize.IBytes(uint64(cl.Bytes)), cl.Updated.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	rm := &cobra.Command{
		Use:   "rm CLONE",
		Short: "Remove one of your clones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			if err := c.RemoveClone(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Printf("removed clone %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, rm)
	cmd.AddCommand(newCloneHistoryCmds(g)...)
	return cmd
}
