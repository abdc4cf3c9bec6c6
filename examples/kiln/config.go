package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

// config is what the CLI remembers between runs, in config.json under the
// config dir (KILN_HOME, else the user's config dir + "/kiln").
type config struct {
	// Target is the controller URL commands use by default.
	Target string `json:"target,omitempty"`
	// Auth holds the login of each target, by normalized URL.
	Auth map[string]auth `json:"auth,omitempty"`
}

// auth is one target's login.
type auth struct {
	User  string `json:"user"`
	Token string `json:"token"`
}

// configDir returns the directory of the config file.
func configDir(env func(string) string) (string, error) {
	if d := env("KILN_HOME"); d != "" {
		return d, nil
	}
	if d := env("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kiln"), nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config dir: %w (set KILN_HOME)", err)
	}
	return filepath.Join(d, "kiln"), nil
}

// loadConfig reads the config in dir; a missing file is an empty config.
func loadConfig(dir string) (config, error) {
	var c config
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", filepath.Join(dir, "config.json"), err)
	}
	return c, nil
}

// save writes the config atomically, readable by the user only since it
// holds tokens.
func (c config) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "config.json")); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}

// normalizeTarget adds http:// when no scheme is given and drops trailing
// slashes, as the original CLI did.
func normalizeTarget(t string) string {
	t = strings.TrimSpace(t)
	if t == "" {
		return ""
	}
	if !strings.Contains(t, "://") {
		t = "http://" + t
	}
	return strings.TrimRight(t, "/")
}

func (k *cli) configCommands() []*cobra.Command {
	target := &cobra.Command{
		Use:   "target [URL]",
		Short: "Show or set the controller to talk to",
		Long: "With a URL, check that it answers as a controller and remember it.\n" +
			"Without, print the current target. --target or KILN_TARGET override it per command.",
		Args: maxArgs(1),
		RunE: k.action(func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				t := k.currentTarget()
				if k.json {
					return printJSON(k.out, map[string]string{"target": t, "user": k.cfg.Auth[t].User})
				}
				if t == "" {
					fmt.Fprintln(k.out, "No target set: run kiln target URL")
					return nil
				}
				fmt.Fprintf(k.out, "Target: %s\n", t)
				if u := k.cfg.Auth[t].User; u != "" {
					fmt.Fprintf(k.out, "User:   %s\n", u)
				}
				return nil
			}
			t := normalizeTarget(args[0])
			cl, err := k.newClient(t)
			if err != nil {
				return err
			}
			info, err := cl.Info(cmd.Context())
			if err != nil {
				return fmt.Errorf("%s does not answer as a controller: %w", t, err)
			}
			if info.Name == "" || info.Version == "" {
				return fmt.Errorf("%s does not answer as a controller: no name or version in /info", t)
			}
			k.cfg.Target = t
			if err := k.cfg.save(k.cfgDir); err != nil {
				return err
			}
			if k.json {
				return printJSON(k.out, map[string]string{"target": t})
			}
			fmt.Fprintf(k.out, "Target set to %s (%s %s)\n", t, info.Name, info.Version)
			return nil
		}),
	}
	info := &cobra.Command{
		Use:   "info",
		Short: "Show the target, the user, and the account's usage and limits",
		Args:  noArgs,
		RunE: k.withClient(false, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			info, err := cl.Info(cmd.Context())
			if err != nil {
				return err
			}
			if k.json {
				return printJSON(k.out, info)
			}
			fmt.Fprintf(k.out, "%s\n%s\n\nTarget:  %s (v%s)\n", info.Description, info.Support, k.currentTarget(), info.Version)
			if info.User == "" {
				fmt.Fprintln(k.out, "User:    (not logged in)")
				return nil
			}
			fmt.Fprintf(k.out, "User:    %s\n", info.User)
			if info.Usage != nil && info.Limits != nil {
				fmt.Fprintf(k.out, "Usage:   memory %s of %s, apps %d of %d, services %d of %d\n",
					humanMB(info.Usage.Memory), humanMB(info.Limits.Memory), info.Usage.Apps, info.Limits.Apps, info.Usage.Services, info.Limits.Services)
			}
			return nil
		}),
	}
	return []*cobra.Command{target, info}
}
