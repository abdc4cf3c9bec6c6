package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

func (k *cli) dropletsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "droplets NAME",
		Short: "List the staged droplets kept for an app, newest first",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			ds, err := cl.Droplets(ctx, name)
			if err != nil {
				return err
			}
			if ds == nil {
				ds = []client.Droplet{}
			}
			if k.json {
				return printJSON(k.out, ds)
			}
			now := time.Now()
			rows := make([][]string, 0, len(ds))
			for _, d := range ds {
				cur := ""
				if d.Current {
					cur = "*"
				}
				rows = append(rows, []string{cur, d.Hash, since(now, d.Created)})
			}
			table(k.out, []string{"CURRENT", "DROPLET", "CREATED"}, rows)
			return nil
		}),
	}
}

func (k *cli) rollbackCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback NAME [DROPLET]",
		Short: "Run a kept droplet again (default: the one before the current)",
		Long: "Make a kept droplet current and roll the app's instances over to it.\n" +
			"DROPLET is a hash, or a unique prefix of one, from kiln droplets NAME.",
		Args: rangeArgs(1, 2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			ds, err := cl.Droplets(ctx, name)
			if err != nil {
				return err
			}
			want := ""
			if len(rest) == 1 {
				want = rest[0]
			}
			d, err := pickDroplet(ds, want)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := cl.Rollback(ctx, name, d.Hash); err != nil {
				return err
			}
			k.say("Rolled %s back to droplet %s\n", name, d.Hash)
			return nil
		}),
	}
}

// pickDroplet finds the droplet named by a hash prefix, or with an empty
// prefix the newest one older than the current one.
func pickDroplet(ds []client.Droplet, prefix string) (client.Droplet, error) {
	if prefix == "" {
		for i, d := range ds {
			if d.Current && i+1 < len(ds) {
				return ds[i+1], nil
			}
		}
		return client.Droplet{}, fmt.Errorf("no droplet older than the current one: %w", errNotFound)
	}
	var found []client.Droplet
	for _, d := range ds {
		if strings.HasPrefix(d.Hash, prefix) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return client.Droplet{}, fmt.Errorf("no droplet %s: %w", prefix, errNotFound)
	case 1:
		return found[0], nil
	}
	return client.Droplet{}, usagef("droplet prefix %s is ambiguous", prefix)
}

func (k *cli) eventsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "events NAME",
		Short: "Show what happened to an app: creation, stagings, crashes",
		Long: "Show an app's history, oldest first. With a controller that has no events\n" +
			"endpoint it is assembled from the app, its kept droplets and its crashes.",
		Args: exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			evs, err := k.events(ctx, cl, name)
			if err != nil {
				return err
			}
			if k.json {
				return printJSON(k.out, evs)
			}
			rows := make([][]string, 0, len(evs))
			for _, e := range evs {
				rows = append(rows, []string{time.Unix(e.Time, 0).UTC().Format(time.RFC3339), e.Type, e.Description})
			}
			table(k.out, []string{"TIME", "EVENT", "DESCRIPTION"}, rows)
			return nil
		}),
	}
}

func (k *cli) events(ctx context.Context, cl *client.Client, name string) ([]client.Event, error) {
	evs, err := cl.Events(ctx, name)
	var ce *client.Error
	if err == nil {
		if evs == nil {
			evs = []client.Event{}
		}
		return evs, nil
	}
	// An unknown route answers 404 with no code; anything else is real.
	if !errors.As(err, &ce) || ce.Status != 404 || ce.Code != 0 {
		return nil, err
	}
	a, err := cl.App(ctx, name)
	if err != nil {
		return nil, err
	}
	evs = []client.Event{{Time: a.Meta.Created, Type: "app-created"}}
	ds, err := cl.Droplets(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		desc := "droplet " + d.Hash
		if d.Current {
			desc += " (current)"
		}
		evs = append(evs, client.Event{Time: d.Created, Type: "app-staged", Description: desc})
	}
	cs, err := cl.Crashes(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		evs = append(evs, client.Event{Time: c.Since, Type: "instance-crashed", Description: "instance " + c.Instance})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time < evs[j].Time })
	return evs, nil
}

func (k *cli) runtimesCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "runtimes",
		Aliases: []string{"stacks"},
		Short:   "List the runtimes (stacks) apps can run on",
		Args:    noArgs,
		RunE: k.withClient(false, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			rts, err := cl.Runtimes(cmd.Context())
			if err != nil {
				return err
			}
			if rts == nil {
				rts = map[string]client.Runtime{}
			}
			if k.json {
				return printJSON(k.out, rts)
			}
			names := make([]string, 0, len(rts))
			for n := range rts {
				names = append(names, n)
			}
			sort.Strings(names)
			rows := make([][]string, 0, len(names))
			for _, n := range names {
				rows = append(rows, []string{n, rts[n].Version, rts[n].Description})
			}
			table(k.out, []string{"NAME", "VERSION", "DESCRIPTION"}, rows)
			return nil
		}),
	}
}

// buildpack is one entry of kiln buildpacks.
type buildpack struct {
	Name     string   `json:"name"`
	Runtimes []string `json:"runtimes"`
}

func (k *cli) buildpacksCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "buildpacks",
		Aliases: []string{"frameworks"},
		Short:   "List the frameworks (buildpacks) apps can be staged with",
		Args:    noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			info, err := cl.Info(cmd.Context())
			if err != nil {
				return err
			}
			bps := make([]buildpack, 0, len(info.Frameworks))
			for n, fw := range info.Frameworks {
				bp := buildpack{Name: n, Runtimes: []string{}}
				for _, r := range fw.Runtimes {
					bp.Runtimes = append(bp.Runtimes, r.Name)
				}
				bps = append(bps, bp)
			}
			sort.Slice(bps, func(i, j int) bool { return bps[i].Name < bps[j].Name })
			if k.json {
				return printJSON(k.out, bps)
			}
			rows := make([][]string, 0, len(bps))
			for _, b := range bps {
				rows = append(rows, []string{b.Name, strings.Join(b.Runtimes, ", ")})
			}
			table(k.out, []string{"NAME", "RUNTIMES"}, rows)
			return nil
		}),
	}
}
