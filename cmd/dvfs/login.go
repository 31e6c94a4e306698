package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/sync/api"
)

// envTokenFile names the token file, instead of tokenFile's default.
const envTokenFile = "DVFS_TOKEN_FILE"

// tokenFile is where dvfs login stores the user's token and where every
// client command looks for one when neither --token nor DVFS_TOKEN gives
// it: $DVFS_TOKEN_FILE, else dvfs/token in the user's configuration
// directory (~/.config/dvfs/token on Linux, %AppData%\dvfs\token on
// Windows).
func tokenFile() (string, error) {
	if p := os.Getenv(envTokenFile); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no place for the token file (set %s): %w", envTokenFile, err)
	}
	return filepath.Join(dir, "dvfs", "token"), nil
}

// readTokenFile returns the token in the token file, "" when there is
// none.
func readTokenFile() (string, error) {
	path, err := tokenFile()
	if err != nil {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeTokenFile stores token in path, readable by its owner only (the
// file is 0600 before the token is in it).
func writeTokenFile(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return diskio.WriteFileSync(path, []byte(token+"\n"), 0o600)
}

func newLoginCmd(g *globals) *cobra.Command {
	var name string
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login [--user NAME] [--password-stdin]",
		Short: "Log in with your directory password; stores a token for the other commands",
		Long: `Login sends your directory (LDAP / Active Directory) password to the server
once, over --server's connection (use https beyond loopback), and stores the
token it answers in $DVFS_TOKEN_FILE, else dvfs/token in your configuration
directory (~/.config/dvfs/token), mode 0600. Every dvfs command that talks to
the server uses that token when neither --token nor DVFS_TOKEN gives one.

The password is read from the terminal without echo, or with --password-stdin
from the first line of standard input. The token expires (dvfs serve
--ldap-token-expires, 30 days by default) and stops working at once when your
account is disabled or the token revoked (dvfs token revoke).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				u, err := user.Current()
				if err != nil {
					return fmt.Errorf("who are you? give --user: %w", err)
				}
				name = u.Username
				if _, after, ok := strings.Cut(name, `\`); ok {
					name = after // Windows: DOMAIN\name
				}
			}
			if err := api.ValidPrincipalName(name); err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			path, err := tokenFile()
			if err != nil {
				return err
			}
			password, err := readPassword(cmd.InOrStdin(), fromStdin, name)
			if err != nil {
				return err
			}
			c, err := g.newClient()
			if err != nil {
				return err
			}
			res, err := c.Login(cmd.Context(), name, password)
			if err != nil {
				return err
			}
			if err := writeTokenFile(path, res.Token); err != nil {
				return fmt.Errorf("storing the token: %w", err)
			}
			fmt.Fprintf(os.Stderr, "logged in as %s (%s); token %s expires %s; stored in %s\n",
				res.Name, res.Role, res.ID, expiry(res.Expires), path)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "user", "", "directory user name (default: your login name)")
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

// readPassword reads a password from the terminal without echo, or from
// the first line of in.
func readPassword(in io.Reader, fromStdin bool, name string) (string, error) {
	var pw string
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(in, api.MaxPasswordLen+2)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		fd := int(os.Stdin.Fd())
		if !term.IsTerminal(fd) {
			return "", errors.New("standard input is no terminal: give --password-stdin to read the password from it")
		}
		fmt.Fprintf(os.Stderr, "password for %s: ", name)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		pw = string(b)
	}
	if pw == "" || len(pw) > api.MaxPasswordLen {
		return "", fmt.Errorf("a password has 1-%d bytes", api.MaxPasswordLen)
	}
	return pw, nil
}
