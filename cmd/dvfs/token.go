package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/sync/api"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage access tokens"}
	var role string
	create := &cobra.Command{
		Use:   "create [--role user|admin] NAME",
		Short: "Make a token (needs an admin token); prints it once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.newClient()
			if err != nil {
				return err
			}
			res, err := c.CreateToken(cmd.Context(), args[0], role)
			if err != nil {
				return err
			}
			fmt.Println(res.Token)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", api.RoleUser, "role: user or admin")
	cmd.AddCommand(create)
	return cmd
}
