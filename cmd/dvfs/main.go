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
	// config is the config file (config.go); logFormat text or json.
	config, logFormat string
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
		Version:       buildVersion(),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if readsConfig(cmd.Name()) {
				if err := applyConfigFile(cmd, g.config); err != nil {
					return err
				}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			h, err := newLogHandler(os.Stderr, g.logFormat, level)
			if err != nil {
				return err
			}
			g.log = slog.New(h)
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
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.server, "server", "", "server URL, or several comma-separated servers of one repository to fail over between (default $"+envServer+")")
	pf.StringVar(&g.token, "token", "", "access token (default $"+envToken+", else the file dvfs login stores it in)")
	pf.StringVar(&g.caCert, "ca-cert", "", "PEM file of the CA that signed the server's TLS certificate")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&g.config, "config", "", "config file (TOML; default "+defaultConfigFile+" if present): its [serve] and [mount] tables set those commands' flags; the command line wins")
	pf.StringVar(&g.cpuProf, "cpuprofile", "", "write a CPU profile (pprof) of the command to this file")
	root.AddCommand(newServeCmd(g), newTemplateCmd(g), newTokenCmd(g), newLoginCmd(g), newCloneCmd(g), newMountCmd(g), newUmountCmd(g), newLoopbackCmd(g), newStatusCmd(g), newVersionCmd(), newDoctorCmd(g))
	root.AddCommand(newQuotaCmd(g), newMigrateCmd(g))
	return root
}
