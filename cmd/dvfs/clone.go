package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/clones"
)

func newCloneCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "clone", Short: "Create, list, share and remove your linked clones"}
	var template, from string
	create := &cobra.Command{
		Use:   "create (--template NAME[@VERSION] | --from OWNER/CLONE) CLONE",
		Short: "Make a linked clone of a template, or of a clone shared with you (instant: nothing is copied)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			if (template == "") == (from == "") {
				return errors.New("give --template or --from, one of them")
			}
			var info api.CloneInfo
			if from != "" {
				owner, src, ok := strings.Cut(from, "/")
				if !ok {
					return fmt.Errorf("--from %q: want OWNER/CLONE (see dvfs clone list --shared)", from)
				}
				if info, err = clones.CreateFrom(cmd.Context(), c, owner, src, args[0]); err != nil {
					return err
				}
				fmt.Printf("created clone %s of %s (template %s@%d)\n", info.Name, info.Source, info.Template, info.TemplateVersion)
				return nil
			}
			name, v, err := parseRef(template)
			if err != nil {
				return err
			}
			if info, err = clones.Create(cmd.Context(), c, name, v, args[0]); err != nil {
				return err
			}
			fmt.Printf("created clone %s of %s@%d\n", info.Name, info.Template, info.TemplateVersion)
			return nil
		},
	}
	create.Flags().StringVar(&template, "template", "", "template to clone, NAME or NAME@VERSION")
	create.Flags().StringVar(&from, "from", "", "a clone shared with you to clone, OWNER/CLONE (dvfs clone list --shared)")

	var (
		all, shared bool
		user        string
	)
	list := &cobra.Command{
		Use:   "list [--all | --user NAME | --shared]",
		Short: "List your clones; an admin's anyone's (--all, --user); those shared with you (--shared)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			var list []api.CloneInfo
			switch {
			case all:
				list, err = c.AllClones(cmd.Context())
			case shared:
				list, err = c.SharedClones(cmd.Context())
			default:
				list, err = c.ClonesOf(cmd.Context(), user)
			}
			if err != nil {
				return err
			}
			// Your own clones' table starts with the clone's name;
			// others' with their owner's.
			owners := all || shared || user != ""
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			if owners {
				fmt.Fprint(tw, "OWNER\t")
			}
			fmt.Fprintln(tw, "CLONE\tTEMPLATE\tGENERATION\tSIZE\tUPDATED\tSHARED WITH")
			for _, cl := range list {
				if owners {
					fmt.Fprintf(tw, "%s\t", cl.Owner)
				}
				fmt.Fprintf(tw, "%s\t%s@%d\t%d\t%s\t%s\t%s\n", cl.Name, cl.Template, cl.TemplateVersion,
					cl.Generation, humanize.IBytes(uint64(cl.Bytes)), cl.Updated.Local().Format(time.DateTime), strings.Join(cl.Shared, ","))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&all, "all", false, "every user's clones (admins)")
	list.Flags().StringVar(&user, "user", "", "this user's clones (admins)")
	list.Flags().BoolVar(&shared, "shared", false, "the clones shared with your groups")
	list.MarkFlagsMutuallyExclusive("all", "user", "shared")
	var rmUser string
	rm := &cobra.Command{
		Use:   "rm [--user NAME] CLONE",
		Short: "Remove one of your clones; an admin another user's (--user)",
		Long: `Remove a clone and all its generations and snapshots on the server; its
data goes at the next garbage collection. A workstation that has the clone
open finds it gone at its next sync: what it had not synced is saved as a
new clone of the owner's, and the clone turns read-only there.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			if err := c.RemoveCloneOf(cmd.Context(), rmUser, args[0]); err != nil {
				return err
			}
			if rmUser != "" {
				fmt.Printf("removed clone %s of %s\n", args[0], rmUser)
				return nil
			}
			fmt.Printf("removed clone %s\n", args[0])
			return nil
		},
	}
	rm.Flags().StringVar(&rmUser, "user", "", "the clone's owner (admins)")
	cmd.AddCommand(create, list, rm, newShareCmd(g, true), newShareCmd(g, false))
	cmd.AddCommand(newCloneHistoryCmds(g)...)
	return cmd
}

// newShareCmd is dvfs clone share (share) or unshare.
func newShareCmd(g *globals, share bool) *cobra.Command {
	var group string
	use, short := "share", "Share one of your clones read-only with a group: its members may read and clone it"
	if !share {
		use, short = "unshare", "Stop sharing one of your clones with a group"
	}
	cmd := &cobra.Command{
		Use:   use + " CLONE --group GROUP",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			info, err := c.Share(cmd.Context(), args[0], group, share)
			if err != nil {
				return err
			}
			if len(info.Shared) == 0 {
				fmt.Printf("clone %s is shared with no group\n", info.Name)
				return nil
			}
			fmt.Printf("clone %s is shared read-only with %s\n", info.Name, strings.Join(info.Shared, ", "))
			return nil
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "the group")
	_ = cmd.MarkFlagRequired("group")
	return cmd
}
