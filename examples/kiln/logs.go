package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
)

func (k *cli) logCommands() []*cobra.Command {
	var tail, staging bool
	logs := &cobra.Command{
		Use:   "logs NAME",
		Short: "Show an app's recent log lines; --tail streams new ones",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			cl, err := k.streamClient(cl)
			if err != nil {
				return err
			}
			if staging {
				return cl.StagingLog(ctx, name, tail, k.out)
			}
			if tail {
				err := cl.FollowLogs(ctx, name, func(l protocol.LogLine) bool {
					k.printLogLine(l)
					return true
				})
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			lines, err := cl.Logs(ctx, name)
			if err != nil {
				return err
			}
			if k.json {
				if lines == nil {
					lines = []protocol.LogLine{}
				}
				return printJSON(k.out, lines)
			}
			for _, l := range lines {
				k.printLogLine(l)
			}
			return nil
		}),
	}
	logs.Flags().BoolVarP(&tail, "tail", "f", false, "keep streaming new lines until interrupted")
	logs.Flags().BoolVar(&staging, "staging", false, "show the last staging log instead")
	return []*cobra.Command{logs}
}

// printLogLine prints one line: JSON per line with --json, else a
// timestamped, source-tagged line.
func (k *cli) printLogLine(l protocol.LogLine) {
	if k.json {
		_ = printJSON(k.out, l)
		return
	}
	ts := time.Unix(0, l.Timestamp).UTC().Format("2006-01-02T15:04:05.000Z")
	fmt.Fprintf(k.out, "%s [%s/%d] %s %s\n", ts, l.Source, l.Index, streamTag(l.Stream), l.Line)
}

func streamTag(s string) string {
	if s == "stderr" {
		return "ERR"
	}
	return "OUT"
}

func (k *cli) statsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stats NAME",
		Short: "Show the resource usage of an app's running instances",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			st, err := cl.Stats(ctx, name)
			if err != nil {
				return err
			}
			if st == nil {
				st = map[string]client.InstanceStats{}
			}
			if k.json {
				return printJSON(k.out, st)
			}
			idx := make([]string, 0, len(st))
			for i := range st {
				idx = append(idx, i)
			}
			sort.Slice(idx, func(a, b int) bool { return atoi(idx[a]) < atoi(idx[b]) })
			rows := make([][]string, 0, len(idx))
			for _, i := range idx {
				s := st[i]
				row := []string{i, s.State, "-", "-", "-", "-"}
				if s.Stats != nil {
					row[2] = (time.Duration(s.Stats.Uptime) * time.Second).String()
					if u := s.Stats.Usage; u != nil {
						row[3] = fmt.Sprintf("%.1f%%", u.CPU)
						row[4] = fmt.Sprintf("%s of %s", humanBytes(u.Mem*1024), humanBytes(s.Stats.MemQuota))
						row[5] = fmt.Sprintf("%s of %s", humanBytes(u.Disk), humanBytes(s.Stats.DiskQuota))
					}
				}
				rows = append(rows, row)
			}
			table(k.out, []string{"INSTANCE", "STATE", "UPTIME", "CPU", "MEMORY", "DISK"}, rows)
			return nil
		}),
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 1 << 30
	}
	return n
}

func (k *cli) crashesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "crashes NAME",
		Short: "List an app's crashed instances",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			cs, err := cl.Crashes(ctx, name)
			if err != nil {
				return err
			}
			if cs == nil {
				cs = []client.Crash{}
			}
			if k.json {
				return printJSON(k.out, cs)
			}
			now := time.Now()
			rows := make([][]string, 0, len(cs))
			for i, c := range cs {
				rows = append(rows, []string{fmt.Sprintf("%s-%d", name, i+1), c.Instance, since(now, c.Since)})
			}
			table(k.out, []string{"NAME", "INSTANCE", "CRASHED"}, rows)
			return nil
		}),
	}
}

// logDirs are where an instance keeps logs, as the original CLI looked.
var logDirs = []string{"logs", "app/logs", "app/log"}

func (k *cli) crashlogsCommand() *cobra.Command {
	var instance string
	cmd := &cobra.Command{
		Use:   "crashlogs NAME",
		Short: "Show the log files of an app's last crashed instance",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			cs, err := cl.Crashes(ctx, name)
			if err != nil {
				return err
			}
			id := instance
			switch {
			case id == "" && len(cs) == 0:
				return fmt.Errorf("%s has no crashed instances: %w", name, errNotFound)
			case id == "":
				id = cs[len(cs)-1].Instance
			case strings.HasPrefix(id, name+"-"):
				// The NAME-n names the crashes command prints.
				n, err := strconv.Atoi(strings.TrimPrefix(id, name+"-"))
				if err != nil || n < 1 || n > len(cs) {
					return fmt.Errorf("no crash %s: %w", id, errNotFound)
				}
				id = cs[n-1].Instance
			}
			return k.dumpLogs(ctx, cl, name, id)
		}),
	}
	cmd.Flags().StringVarP(&instance, "instance", "i", "", "instance id, index or NAME-n from kiln crashes (default: the last crash)")
	return cmd
}

// dumpLogs prints every file under the instance's log directories.
func (k *cli) dumpLogs(ctx context.Context, cl *client.Client, name, instance string) error {
	found := false
	for _, dir := range logDirs {
		listing, err := cl.File(ctx, name, instance, dir)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		for _, f := range listEntries(string(listing)) {
			if strings.HasSuffix(f, "/") {
				continue
			}
			b, err := cl.File(ctx, name, instance, dir+"/"+f)
			if err != nil {
				return err
			}
			found = true
			fmt.Fprintf(k.out, "==== %s/%s ====\n%s", dir, f, b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				fmt.Fprintln(k.out)
			}
		}
	}
	if !found {
		return fmt.Errorf("no log files for instance %s of %s: %w", instance, name, errNotFound)
	}
	return nil
}

// listEntries reads a directory listing of the files API: one entry per
// line, the name first, directories ending in "/".
func listEntries(listing string) []string {
	var out []string
	for _, line := range strings.Split(listing, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

func (k *cli) filesCommand() *cobra.Command {
	var instance string
	cmd := &cobra.Command{
		Use:   "files NAME [PATH]",
		Short: "List a directory or print a file of an app instance",
		Args:  rangeArgs(1, 2),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, rest []string) error {
			p := "/"
			if len(rest) == 1 {
				p = rest[0]
			}
			b, err := cl.File(ctx, name, instance, p)
			if err != nil {
				return err
			}
			_, err = k.out.Write(b)
			return err
		}),
	}
	cmd.Flags().StringVarP(&instance, "instance", "i", "0", "instance index or id")
	return cmd
}
