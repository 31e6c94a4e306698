package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/api"
)

func newQuotaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "Show and set users' quotas on clone data"}
	set := &cobra.Command{
		Use:   "set USER SIZE",
		Short: "Set a user's quota on clone data (admins): a size (\"20GiB\"), \"none\", or \"default\" (dvfs serve --quota-clone)",
		Long: `Set how much clone data USER may hold on the server: the blocks of all
their clones' generations and snapshots, and of their uploads not yet
committed, that no template holds. An upload or commit that would pass it
is refused; the workstation keeps the data and retries, so raising the
quota lets it sync. Lowering it below what the user holds takes nothing
away: it refuses their next change that adds data.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req api.QuotaRequest
			switch v := strings.ToLower(args[1]); v {
			case "default":
				req.Default = true
			case "none", "0":
			default:
				n, err := quotaFlag("SIZE", args[1])
				if err != nil {
					return err
				}
				req.Bytes = n
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			info, err := c.SetQuota(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printQuotas(info)
		},
	}
	show := &cobra.Command{
		Use:   "show [USER]",
		Short: "Show your quota and usage of clone data, or USER's (admins)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			var user string
			if len(args) == 1 {
				user = args[0]
			} else {
				p, err := c.WhoAmI(cmd.Context())
				if err != nil {
					return err
				}
				user = p.Name
			}
			info, err := c.Quota(cmd.Context(), user)
			if err != nil {
				return err
			}
			return printQuotas(info)
		},
	}
	cmd.AddCommand(set, show)
	return cmd
}

func printQuotas(list ...api.QuotaInfo) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tUSED\tQUOTA\tUNCOMMITTED UPLOADS")
	for _, q := range list {
		quota := "none"
		if q.Quota > 0 {
			quota = humanize.IBytes(uint64(q.Quota))
		}
		if q.Default {
			quota += " (default)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", q.User, humanize.IBytes(uint64(q.Used)), quota, humanize.IBytes(uint64(q.Pending)))
	}
	return tw.Flush()
}
