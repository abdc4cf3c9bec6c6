package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

func (k *cli) envCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "env NAME",
		Short: "List an app's environment variables",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			if k.json {
				m := map[string]string{}
				for _, e := range a.Env {
					key, val, _ := strings.Cut(e, "=")
					m[key] = val
				}
				return printJSON(k.out, m)
			}
			for _, e := range a.Env {
				fmt.Fprintln(k.out, e)
			}
			return nil
		}),
	}
}

func (k *cli) envAddCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "env-add NAME KEY=VALUE...",
		Short: "Set environment variables of an app (restarts it if started)",
		Args:  cobra.MatchAll(cobra.MinimumNArgs(2), validEnvArgs),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, pairs []string) error {
			return k.editApp(ctx, cl, name, func(a *client.App, u *client.AppUpdate) error {
				env := setEnv(a.Env, pairs)
				u.Env = &env
				return nil
			}, "Updated the environment of %s\n")
		}),
	}
}

func (k *cli) envDelCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "env-del NAME KEY...",
		Short: "Remove environment variables of an app (restarts it if started)",
		Args:  rangeArgs(2, 1<<16),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, keys []string) error {
			return k.editApp(ctx, cl, name, func(a *client.App, u *client.AppUpdate) error {
				env, removed := delEnv(a.Env, keys)
				if removed == 0 {
					return fmt.Errorf("%s has none of %s: %w", name, strings.Join(keys, ", "), errNotFound)
				}
				u.Env = &env
				return nil
			}, "Updated the environment of %s\n")
		}),
	}
}

// validEnvArgs checks that every argument after the app is KEY=VALUE.
func validEnvArgs(_ *cobra.Command, args []string) error {
	if len(args) < 2 {
		return usagef("usage: kiln env-add NAME KEY=VALUE...")
	}
	for _, p := range args[1:] {
		if key, _, ok := strings.Cut(p, "="); !ok || key == "" {
			return usagef("%q is not KEY=VALUE", p)
		}
	}
	return nil
}

// setEnv returns env with the K=V pairs set, replacing existing keys in
// place and appending new ones.
func setEnv(env, pairs []string) []string {
	out := slices.Clone(env)
	for _, p := range pairs {
		key, _, _ := strings.Cut(p, "=")
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, key+"=") })
		if i >= 0 {
			out[i] = p
		} else {
			out = append(out, p)
		}
	}
	return out
}

// delEnv returns env without the keys and how many entries it removed.
func delEnv(env, keys []string) ([]string, int) {
	out := make([]string, 0, len(env))
	for _, e := range env {
		key, _, _ := strings.Cut(e, "=")
		if !slices.Contains(keys, key) {
			out = append(out, e)
		}
	}
	return out, len(env) - len(out)
}
