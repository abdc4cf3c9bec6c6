package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/examples/kiln/internal/manifest"
)

// defaultStartTimeout is how long start waits for every instance to run;
// the original CLI gave up after 120 s.
const defaultStartTimeout = 120 * time.Second

func (k *cli) appCommands() []*cobra.Command {
	var force, noWait bool
	var timeout time.Duration

	apps := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"list"},
		Short:   "List your apps",
		Args:    noArgs,
		RunE: k.withClient(true, func(cmd *cobra.Command, cl *client.Client, _ []string) error {
			as, err := cl.Apps(cmd.Context())
			if err != nil {
				return err
			}
			if as == nil {
				as = []client.App{}
			}
			sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
			if k.json {
				return printJSON(k.out, as)
			}
			rows := make([][]string, 0, len(as))
			for _, a := range as {
				rows = append(rows, []string{a.Name, health(a), fmt.Sprint(a.Instances), humanMB(a.Resources.Memory), strings.Join(a.URIs, ", "), strings.Join(a.Services, ", ")})
			}
			table(k.out, []string{"NAME", "HEALTH", "INSTANCES", "MEMORY", "URLS", "SERVICES"}, rows)
			return nil
		}),
	}
	show := &cobra.Command{
		Use:   "app NAME",
		Short: "Show one app",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			if k.json {
				return printJSON(k.out, a)
			}
			fmt.Fprintf(k.out, "name:      %s\nstate:     %s (%s)\ninstances: %d\nmemory:    %s\nurls:      %s\nservices:  %s\nversion:   %s\npackage:   %s\n",
				a.Name, a.State, health(a), a.Instances, humanMB(a.Resources.Memory), strings.Join(a.URIs, ", "), strings.Join(a.Services, ", "), a.Version, a.PackageState)
			if a.StagingError != "" {
				fmt.Fprintf(k.out, "staging error: %s\n", a.StagingError)
			}
			return nil
		}),
	}
	start := &cobra.Command{
		Use:   "start NAME",
		Short: "Start an app and wait until its instances run",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			return k.start(ctx, cl, name, timeout, noWait)
		}),
	}
	stop := &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop an app",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			if err := cl.Stop(ctx, name); err != nil {
				return err
			}
			k.say("Stopped %s\n", name)
			return nil
		}),
	}
	restart := &cobra.Command{
		Use:   "restart NAME",
		Short: "Restart an app's instances one by one, without downtime",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			if a.State != "STARTED" {
				return k.start(ctx, cl, name, timeout, noWait)
			}
			if err := cl.Restart(ctx, name); err != nil {
				return err
			}
			k.say("Restarting %s\n", name)
			if noWait {
				return nil
			}
			return k.waitRollout(ctx, cl, name, timeout)
		}),
	}
	for _, c := range []*cobra.Command{start, restart} {
		c.Flags().DurationVarP(&timeout, "timeout", "t", defaultStartTimeout, "how long to wait for the instances to run")
		c.Flags().BoolVar(&noWait, "no-wait", false, "return once the controller accepted the request")
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an app",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			if _, err := cl.App(ctx, name); err != nil {
				return err
			}
			if err := k.confirm(force, "Delete app "+name+"?"); err != nil {
				return err
			}
			if err := cl.DeleteApp(ctx, name); err != nil {
				return err
			}
			k.say("Deleted %s\n", name)
			return nil
		}),
	}
	del.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")

	instances := &cobra.Command{
		Use:   "instances NAME [N|+N|-N]",
		Short: "List an app's instances, or set or change their number",
		Long:  "With N set the number of instances; with +N or -N change it.",
		Args:  rangeArgs(1, 2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			if len(rest) == 0 {
				return k.listInstances(ctx, cl, name)
			}
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			n, err := scaleTo(a.Instances, rest[0])
			if err != nil {
				return err
			}
			if err := cl.Scale(ctx, name, n); err != nil {
				return err
			}
			k.say("Scaled %s from %d to %d instances\n", name, a.Instances, n)
			return nil
		}),
	}
	mem := &cobra.Command{
		Use:   "mem NAME [SIZE]",
		Short: "Show or set the memory of each of an app's instances (64M, 1G, ...)",
		Args:  rangeArgs(1, 2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			if len(rest) == 0 {
				if k.json {
					return printJSON(k.out, map[string]int{"memory": a.Resources.Memory})
				}
				fmt.Fprintln(k.out, humanMB(a.Resources.Memory))
				return nil
			}
			mb, err := manifest.ParseMemory(rest[0])
			if err != nil {
				return usagef("%v", err)
			}
			if err := cl.UpdateApp(ctx, name, client.SetMemory(mb)); err != nil {
				return err
			}
			k.say("Memory of %s set to %s\n", name, humanMB(mb))
			return nil
		}),
	}
	mapURL := &cobra.Command{
		Use:   "map NAME URL",
		Short: "Route a URL to an app",
		Args:  exactArgs(2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			return k.editApp(ctx, cl, name, func(a *client.App, u *client.AppUpdate) error {
				uris := slices.Clone(a.URIs)
				if !slices.Contains(uris, rest[0]) {
					uris = append(uris, rest[0])
				}
				u.URIs = &uris
				return nil
			}, "Mapped %s to "+rest[0]+"\n")
		}),
	}
	unmapURL := &cobra.Command{
		Use:   "unmap NAME URL",
		Short: "Remove a URL from an app",
		Args:  exactArgs(2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			return k.editApp(ctx, cl, name, func(a *client.App, u *client.AppUpdate) error {
				url := strings.TrimPrefix(strings.TrimPrefix(rest[0], "http://"), "https://")
				i := slices.Index(a.URIs, url)
				if i < 0 {
					return fmt.Errorf("%s is not mapped to %s: %w", url, a.Name, errNotFound)
				}
				uris := slices.Delete(slices.Clone(a.URIs), i, i+1)
				u.URIs = &uris
				return nil
			}, "Unmapped "+rest[0]+" from %s\n")
		}),
	}
	return []*cobra.Command{apps, show, start, stop, restart, del, instances, mem, mapURL, unmapURL,
		k.statsCommand(), k.crashesCommand(), k.crashlogsCommand(), k.filesCommand(),
		k.envCommand(), k.envAddCommand(), k.envDelCommand(),
		k.dropletsCommand(), k.rollbackCommand(), k.eventsCommand(), k.runtimesCommand(), k.buildpacksCommand()}
}

// withApp wraps a command whose first argument is an app name and that
// needs a logged-in client.
func (k *cli) withApp(f func(ctx context.Context, cl *client.Client, name string, rest []string) error) func(*cobra.Command, []string) error {
	return k.withClient(true, func(cmd *cobra.Command, cl *client.Client, args []string) error {
		return f(cmd.Context(), cl, args[0], args[1:])
	})
}

// editApp reads the app, lets change fill an update and sends it guarded
// by the app's meta version, so concurrent edits are not lost.
func (k *cli) editApp(ctx context.Context, cl *client.Client, name string, change func(*client.App, *client.AppUpdate) error, done string) error {
	a, err := cl.App(ctx, name)
	if err != nil {
		return err
	}
	u := client.AppUpdate{MetaVersion: client.Ptr(a.Meta.Version)}
	if err := change(&a, &u); err != nil {
		return err
	}
	if err := cl.UpdateApp(ctx, name, u); err != nil {
		return err
	}
	k.say(done, name)
	return nil
}

// health is the original CLI's health column.
func health(a client.App) string {
	switch {
	case a.PackageState == "FAILED":
		return "STAGING FAILED"
	case a.State != "STARTED":
		return a.State
	case a.Instances == 0:
		return "N/A"
	case a.Running() == a.Instances:
		return "RUNNING"
	}
	return fmt.Sprintf("%d%%", a.Running()*100/a.Instances)
}

// scaleTo computes the new instance count from "N", "+N" or "-N".
func scaleTo(current int, arg string) (int, error) {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return 0, usagef("instances: %q is not N, +N or -N", arg)
	}
	if strings.HasPrefix(arg, "+") || strings.HasPrefix(arg, "-") {
		n += current
	}
	if n < 0 {
		return 0, usagef("instances: cannot scale %d by %s", current, arg)
	}
	return n, nil
}

func (k *cli) listInstances(ctx context.Context, cl *client.Client, name string) error {
	is, err := cl.Instances(ctx, name)
	if err != nil {
		return err
	}
	if is == nil {
		is = []client.Instance{}
	}
	if k.json {
		return printJSON(k.out, is)
	}
	now := time.Now()
	rows := make([][]string, 0, len(is))
	for _, i := range is {
		rows = append(rows, []string{strconv.Itoa(i.Index), i.State, since(now, int64(i.Since)), i.Instance})
	}
	table(k.out, []string{"INDEX", "STATE", "SINCE", "ID"}, rows)
	return nil
}

// start starts the app and waits for it.
func (k *cli) start(ctx context.Context, cl *client.Client, name string, timeout time.Duration, noWait bool) error {
	before, err := cl.Crashes(ctx, name)
	if err != nil {
		return err
	}
	if err := cl.Start(ctx, name); err != nil {
		return err
	}
	k.say("Starting %s\n", name)
	if noWait {
		return nil
	}
	return k.waitStarted(ctx, cl, name, len(before), timeout)
}

// stagingTimeout bounds the wait for staging, which has its own timeout
// on the controller; this only keeps a wedged controller from hanging us.
const stagingTimeout = 30 * time.Minute

// waitStarted waits for staging to end and then for every instance to
// run, failing on a staging failure, a new crash or the timeout.
func (k *cli) waitStarted(ctx context.Context, cl *client.Client, name string, crashesBefore int, timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, stagingTimeout)
	defer cancel()
	a, err := k.pollApp(sctx, cl, name, func(a client.App) bool { return a.PackageState != "PENDING" })
	if err != nil {
		return err
	}
	if a.PackageState == "FAILED" {
		return fmt.Errorf("%s: %w: %s", name, errStaging, a.StagingError)
	}
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	bar := newProgress(k.progressOut(), k.tty(), "Starting "+name, 1)
	lastRunning := -1
	for {
		a, err = cl.App(wctx, name)
		if err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				break
			}
			return err
		}
		if a.Instances > 0 && a.Running() != lastRunning {
			lastRunning = a.Running()
			bar.total = int64(a.Instances)
			bar.set(int64(lastRunning))
		}
		if a.State == "STARTED" && a.Running() >= a.Instances {
			bar.done("OK")
			return nil
		}
		if a.PackageState == "FAILED" {
			bar.done("FAILED")
			return fmt.Errorf("%s: %w: %s", name, errStaging, a.StagingError)
		}
		crashes, err := cl.Crashes(wctx, name)
		if err == nil && len(crashes) > crashesBefore {
			bar.done("FAILED")
			c := crashes[len(crashes)-1]
			return fmt.Errorf("%s: %w: instance %s crashed (see kiln crashlogs %s)", name, errStart, c.Instance, name)
		}
		select {
		case <-wctx.Done():
		case <-time.After(k.poll):
			continue
		}
		break
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	bar.done("TIMED OUT")
	return fmt.Errorf("%s: %w: %d of %d instances running after %s", name, errStart, a.Running(), a.Instances, timeout)
}

// waitRollout waits for a rolling restart to finish.
func (k *cli) waitRollout(ctx context.Context, cl *client.Client, name string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		st, err := cl.UpdateStatus(wctx, name)
		if err != nil && wctx.Err() == nil {
			return err
		}
		switch st.State {
		case "SUCCEEDED", "NONE", "":
			k.say("Restarted %s\n", name)
			return nil
		case "CANARY_FAILED", "FAILED":
			return fmt.Errorf("%s: %w: rollout %s: %s", name, errStart, strings.ToLower(st.State), st.Message)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w: rollout still %s after %s", name, errStart, st.State, timeout)
		case <-time.After(k.poll):
		}
	}
}

// pollApp reads the app until cond holds or ctx ends.
func (k *cli) pollApp(ctx context.Context, cl *client.Client, name string, cond func(client.App) bool) (client.App, error) {
	for {
		a, err := cl.App(ctx, name)
		if err != nil {
			return a, err
		}
		if cond(a) {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, fmt.Errorf("%s: %w", name, ctx.Err())
		case <-time.After(k.poll):
		}
	}
}

// progressOut is where progress goes: nowhere with --quiet or --json (so
// JSON output stays parseable), else stdout.
func (k *cli) progressOut() io.Writer {
	if k.quiet || k.json {
		return io.Discard
	}
	return k.out
}
