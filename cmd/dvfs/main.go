// Command dvfs is the one binary of dvfs: the repository server, the admin's
// template tools, and (later) the workstation mount. It parses flags into
// Config structs, wires packages together, and runs them; nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
)

// Environment variables every client command reads when the flag is absent.
const (
	envServer = "DVFS_SERVER"
	envToken  = "DVFS_TOKEN"
)

type globals struct {
	logLevel string
	server   string
	token    string
	caCert   string
	cpuProf  string
	log      *slog.Logger
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dvfs:", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "dvfs",
		Short:         "Distributed VM template and linked-clone filesystem for computer labs",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if g.cpuProf != "" {
				f, err := os.Create(g.cpuProf)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			return nil
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if g.cpuProf != "" {
				pprof.StopCPUProfile()
			}
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.server, "server", "", "server URL (default $"+envServer+")")
	pf.StringVar(&g.token, "token", "", "access token (default $"+envToken+")")
	pf.StringVar(&g.caCert, "ca-cert", "", "PEM file of the CA that signed the server's TLS certificate")
	pf.StringVar(&g.cpuProf, "cpuprofile", "", "write a CPU profile (pprof) of the command to this file")
	root.AddCommand(newServeCmd(g), newTemplateCmd(g), newTokenCmd(g), newCloneCmd(g), newMountCmd(g), newUmountCmd(g), newLoopbackCmd(g), newStatusCmd(g))
	return root
}
