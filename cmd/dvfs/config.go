package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// defaultConfigFile is read when --config is not given and the file
// exists.
const defaultConfigFile = "/etc/dvfs/dvfs.toml"

// configSections are the commands a config file configures: one table
// each, whose keys are the command's flags (without the dashes).
var configSections = []string{"serve", "mount"}

// configSubtables are the tables that hold some flags of a command, named
// without a prefix all those flags share: [ldap] url is dvfs serve's
// --ldap-url.
var configSubtables = map[string]struct{ command, prefix string }{
	"ldap": {"serve", ldapFlagPrefix},
}

// borrowers are the commands that take flags from another command's
// table: dvfs doctor takes from [mount] the flags it shares with dvfs
// mount; dvfs migrate takes from [serve] where the servers keep the
// repository (only these: [serve] data is a server's directory, not the
// one migrate fills).
var borrowers = map[string]struct {
	section string
	only    []string // nil: every flag the borrower has
}{
	"doctor":  {"mount", nil},
	"migrate": {"serve", []string{"store", "store-credentials", "meta"}},
}

// readsConfig tells the commands that read the config file.
func readsConfig(name string) bool {
	_, ok := borrowers[name]
	return ok || slices.Contains(configSections, name)
}

// notInConfig are flags a config file may not set: the file itself, and
// a user's token, which does not belong in a file every user of a
// workstation reads (give it as --token or DVFS_TOKEN).
var notInConfig = []string{"config", "token", "help", "version", "cpuprofile"}

// applyConfigFile sets the flags of cmd (dvfs serve or dvfs mount, or a
// borrower) that the command line left unset from its table in the config
// file: the
// file named by --config, else defaultConfigFile when it exists. The
// server's URL in DVFS_SERVER also wins over the file. A key
// no flag has is an error naming it, in either table, whichever command
// runs.
func applyConfigFile(cmd *cobra.Command, path string) error {
	if path == "" {
		if _, err := os.Stat(defaultConfigFile); err != nil {
			return nil
		}
		path = defaultConfigFile
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return fmt.Errorf("config %s:%d:%d: %s", path, row, col, de.Error())
		}
		return fmt.Errorf("config %s: %w", path, err)
	}
	keys := slices.Sorted(maps.Keys(doc))
	for _, section := range keys {
		command, prefix := section, ""
		if st, ok := configSubtables[section]; ok {
			command, prefix = st.command, st.prefix
		} else if !slices.Contains(configSections, section) {
			tables := slices.Concat(configSections, slices.Sorted(maps.Keys(configSubtables)))
			return fmt.Errorf("config %s: unknown key %q: the tables are %s", path, section, strings.Join(tables, ", "))
		}
		table, ok := doc[section].(map[string]any)
		if !ok {
			return fmt.Errorf("config %s: %q is not a table: write [%s]", path, section, section)
		}
		sub, _, err := cmd.Root().Find([]string{command})
		if err != nil || sub.Name() != command {
			return fmt.Errorf("config %s: no command %q", path, command)
		}
		flags := sub.Flags()
		b, borrow := borrowers[cmd.Name()]
		borrow = borrow && b.section == section
		if sub == cmd {
			// Parsed: holds the inherited flags, with what the command
			// line changed.
			flags = cmd.Flags()
		}
		for _, key := range slices.Sorted(maps.Keys(table)) {
			name := prefix + key
			if st, ok := configSubtables[strings.Split(key, "-")[0]]; ok && prefix == "" && st.command == command {
				return fmt.Errorf("config %s: [%s] %s: write it in [%s] as %s", path, section, key, key[:len(st.prefix)-1], key[len(st.prefix):])
			}
			f := flags.Lookup(name)
			if f == nil {
				f = sub.InheritedFlags().Lookup(name)
			}
			if key == "token" {
				return fmt.Errorf("config %s: [%s] token: a token does not go in a config file every user reads; give it as DVFS_TOKEN or --token", path, section)
			}
			if f == nil || slices.Contains(notInConfig, key) {
				return fmt.Errorf("config %s: [%s] unknown key %q (the keys are the flags of dvfs %s%s, without dashes; see dvfs %s --help)", path, section, key, command, subtableNote(prefix), command)
			}
			target := flags
			if borrow {
				target = cmd.Flags()
				if f = target.Lookup(name); f == nil || b.only != nil && !slices.Contains(b.only, name) {
					continue // not one the borrower takes
				}
			} else if sub != cmd {
				continue // another command's
			}
			if f.Changed {
				continue // the command line wins
			}
			if key == "server" && os.Getenv(envServer) != "" {
				continue // so does the environment
			}
			if err := setFlag(target, name, table[key]); err != nil {
				return fmt.Errorf("config %s: [%s] %s: %w", path, section, key, err)
			}
		}
	}
	return nil
}

// subtableNote says which flags a subtable holds.
func subtableNote(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " that start with --" + prefix + ", without it"
}

// setFlag sets flag name from a TOML value: a string, a number or a bool
// as the command line would give it, an array as the flag repeated.
func setFlag(flags *pflag.FlagSet, name string, v any) error {
	if list, ok := v.([]any); ok {
		if len(list) == 0 {
			if sv, ok := flags.Lookup(name).Value.(pflag.SliceValue); ok {
				return sv.Replace(nil)
			}
		}
		for _, e := range list {
			s, err := tomlScalar(e)
			if err != nil {
				return err
			}
			if err := flags.Set(name, s); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := tomlScalar(v)
	if err != nil {
		return err
	}
	return flags.Set(name, s)
}

func tomlScalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	default:
		return "", fmt.Errorf("want a string, an integer or a bool (durations and sizes as strings: \"5s\", \"64GiB\"), not %T", v)
	}
}

// newLogHandler returns the handler of --log-format (text or json) at
// level.
func newLogHandler(w io.Writer, format string, level slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text", "":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
