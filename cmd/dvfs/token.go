package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/api"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage access tokens"}
	var role, expires string
	create := &cobra.Command{
		Use:   "create [--role user|admin] [--expires DURATION] NAME",
		Short: "Make a token for NAME (needs an admin token); prints it once",
		Long: `Create makes a token for a local user (a lab without a directory) or a
service, and prints it once: the server keeps only its hash. It never expires
unless --expires says when (e.g. 12h, 90d); dvfs token revoke ends it sooner.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			life, err := parseLifetime(expires)
			if err != nil {
				return fmt.Errorf("--expires: %w", err)
			}
			if err := api.ValidPrincipalName(args[0]); err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			res, err := c.NewToken(cmd.Context(), api.TokenRequest{Name: args[0], Role: role, ExpiresIn: int64(life / time.Second)})
			if err != nil {
				return err
			}
			// The token alone: scripts take it as it is
			// (dvfs token list shows its ID and expiry).
			fmt.Println(res.Token)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", api.RoleUser, "role: user or admin")
	create.Flags().StringVar(&expires, "expires", "never", "lifetime: a duration such as 12h or 90d, or never")

	var user string
	var all bool
	list := &cobra.Command{
		Use:   "list [--user NAME] [--all]",
		Short: "List tokens: an admin every user's (or NAME's), a user their own",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user != "" {
				if err := api.ValidPrincipalName(user); err != nil {
					return fmt.Errorf("--user: %w", err)
				}
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			tokens, err := c.Tokens(cmd.Context(), user, all)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tROLE\tSOURCE\tCREATED\tEXPIRES\tSTATE")
			for _, t := range tokens {
				state := "active"
				switch {
				case !t.Revoked.IsZero():
					state = "revoked " + t.Revoked.Local().Format(time.DateTime)
				case !t.Expires.IsZero() && !time.Now().Before(t.Expires):
					state = "expired"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.TokenID, t.Name, t.Role, t.Source,
					t.Created.Local().Format(time.DateTime), expiry(t.Expires), state)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&user, "user", "", "only this user's tokens")
	list.Flags().BoolVar(&all, "all", false, "also revoked and expired tokens")

	var revokeUser string
	revoke := &cobra.Command{
		Use:   "revoke (ID... | --user NAME)",
		Short: "Revoke tokens by ID (dvfs token list shows them), or all of a user's: an admin any, a user their own",
		Long: `Revoke ends tokens at once: the server refuses them from its next request on.
IDs are the first column of dvfs token list; they are not the tokens. With
--user NAME it revokes every active token of NAME (a local user who left;
a directory user is refused anyway once disabled in the directory).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 0) == (revokeUser == "") {
				return errors.New("give token IDs or --user NAME, one of them")
			}
			for _, id := range args {
				if err := api.ValidTokenID(id); err != nil {
					return err
				}
			}
			if revokeUser != "" {
				if err := api.ValidPrincipalName(revokeUser); err != nil {
					return fmt.Errorf("--user: %w", err)
				}
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			if revokeUser != "" {
				tokens, err := c.Tokens(cmd.Context(), revokeUser, false)
				if err != nil {
					return err
				}
				for _, t := range tokens {
					args = append(args, t.TokenID)
				}
				if len(args) == 0 {
					fmt.Printf("%s has no active token\n", revokeUser)
				}
			}
			for _, id := range args {
				t, err := c.RevokeToken(cmd.Context(), id)
				if err != nil {
					return fmt.Errorf("revoke %s: %w", id, err)
				}
				fmt.Printf("revoked %s (%s)\n", t.TokenID, t.Name)
			}
			return nil
		},
	}
	revoke.Flags().StringVar(&revokeUser, "user", "", "revoke every active token of this user")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// expiry shows a token's expiry.
func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

// parseLifetime parses a token's lifetime: a Go duration (90m, 12h), a
// number of days (90d), or never (0).
func parseLifetime(s string) (time.Duration, error) {
	if s == "never" || s == "0" {
		return 0, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int64
		if n, err = strconv.ParseInt(days, 10, 64); err == nil && n > 0 && n <= int64(api.MaxTokenLifetime/(24*time.Hour)) {
			d = time.Duration(n) * 24 * time.Hour
		} else if err == nil {
			err = fmt.Errorf("%d days", n)
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q: want a duration such as 12h or 90d, or never (%v)", s, err)
	case d < time.Minute || d > api.MaxTokenLifetime:
		return 0, fmt.Errorf("%q: want 1m to %dd, or never", s, int64(api.MaxTokenLifetime/(24*time.Hour)))
	}
	return d, nil
}
