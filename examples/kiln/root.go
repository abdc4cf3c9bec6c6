package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
)

// cli is one run of the CLI: its streams, environment, flags and config.
type cli struct {
	in       io.Reader
	out, err io.Writer
	env      func(string) string
	// hc is the HTTP client for the controller; nil means the default.
	hc *http.Client
	// poll is how often waits poll the controller.
	poll time.Duration

	cfgDir string
	cfg    config

	// Global flags.
	target string
	json   bool
	quiet  bool
}

// run is the CLI's entry point: it runs args and returns the exit code.
func run(args []string, stdout, stderr io.Writer, env func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	k := &cli{in: os.Stdin, out: stdout, err: stderr, env: env, poll: time.Second}
	return k.run(ctx, args)
}

// run executes args with k's streams.
func (k *cli) run(ctx context.Context, args []string) int {
	root := k.rootCommand()
	root.SetArgs(negativeDelta(args))
	root.SetOut(k.out)
	root.SetErr(k.err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitUsage // errors cobra returns itself are about the command line
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		code = exitInterrupted
	}
	fmt.Fprintf(k.err, "kiln: %v\n", err)
	if code == exitUsage {
		fmt.Fprintln(k.err, "Run 'kiln help' for usage.")
	}
	return code
}

// negativeDelta lets "kiln instances NAME -2" mean a delta rather than an
// unknown flag: the -N argument moves after "--" at the end.
func negativeDelta(args []string) []string {
	if slices.Contains(args, "--") {
		return args
	}
	// Find the command word, skipping global flags (--target takes a value).
	cmd := -1
	for i := 0; i < len(args); i++ {
		if args[i] == "--target" {
			i++
			continue
		}
		if !strings.HasPrefix(args[i], "-") {
			cmd = i
			break
		}
	}
	if cmd < 0 || args[cmd] != "instances" {
		return args
	}
	for i := cmd + 1; i < len(args); i++ {
		if a := args[i]; len(a) > 1 && a[0] == '-' && strings.Trim(a[1:], "0123456789") == "" {
			return slices.Concat(args[:i:i], args[i+1:], []string{"--", a})
		}
	}
	return args
}

const exitCodesHelp = `Exit codes:
    0  success
    1  any other failure (network, server error, ...)
    2  usage: bad command line, or a required value missing and no terminal to ask
    3  not found: the app, service, user, file or droplet does not exist
    4  not logged in, bad credentials, or not allowed
    5  conflict: the name or URL is taken, or the resource changed or is in use
    6  staging the app failed
    7  the app's instances crashed or did not all start in time
    8  the account's quota (memory, apps, URIs, services) is exhausted
  130  interrupted (Ctrl-C) before the command finished
`

func (k *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "kiln",
		Short:         "Deploy and manage apps on a kiln cloud controller",
		Long:          "kiln deploys and manages apps on a kiln cloud controller.\n\n" + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			dir, err := configDir(k.env)
			if err != nil {
				return withCode(exitError, err)
			}
			k.cfgDir = dir
			k.cfg, err = loadConfig(dir)
			return withCode(exitError, err)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().StringVar(&k.target, "target", "", "controller URL for this command (default: KILN_TARGET, then the stored target)")
	root.PersistentFlags().BoolVar(&k.json, "json", false, "print machine-readable JSON")
	root.PersistentFlags().BoolVarP(&k.quiet, "quiet", "q", false, "print only errors and requested data")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return withCode(exitUsage, err) })
	root.AddCommand(&cobra.Command{
		Use:   "exit-codes",
		Short: "Describe the exit codes",
		Args:  noArgs,
		Run:   func(*cobra.Command, []string) { fmt.Fprint(k.out, exitCodesHelp) },
	})
	groups := [][]*cobra.Command{k.configCommands(), k.userCommands(), k.appCommands(), k.pushCommands(), k.logCommands(), k.serviceCommands()}
	for _, g := range groups {
		root.AddCommand(g...)
	}
	return root
}

// action wraps a command body so that its errors carry exit codes.
func (k *cli) action(f func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return withCode(classify(err), err)
		}
		return nil
	}
}

// withClient is action for commands that talk to the target: f gets a
// client for it, holding the token when login is true (and the command
// fails with errNotLoggedIn when there is none).
func (k *cli) withClient(login bool, f func(*cobra.Command, *client.Client, []string) error) func(*cobra.Command, []string) error {
	return k.action(func(cmd *cobra.Command, args []string) error {
		cl, err := k.client(login)
		if err != nil {
			return err
		}
		return f(cmd, cl, args)
	})
}

// noArgs, exactArgs, maxArgs and rangeArgs validate positional arguments.
func noArgs(cmd *cobra.Command, args []string) error { return rangeArgs(0, 0)(cmd, args) }

func exactArgs(n int) cobra.PositionalArgs { return rangeArgs(n, n) }

func maxArgs(n int) cobra.PositionalArgs { return rangeArgs(0, n) }

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usagef("usage: %s", cmd.UseLine())
		}
		return nil
	}
}

// currentTarget is the target of this run: --target, KILN_TARGET, then
// the stored one.
func (k *cli) currentTarget() string {
	for _, t := range []string{k.target, k.env("KILN_TARGET"), k.cfg.Target} {
		if t != "" {
			return normalizeTarget(t)
		}
	}
	return ""
}

// requestTimeout bounds one ordinary API call.
const requestTimeout = 5 * time.Minute

// httpClient is the HTTP client of ordinary calls.
func (k *cli) httpClient() *http.Client {
	if k.hc != nil {
		return k.hc
	}
	return &http.Client{Timeout: requestTimeout}
}

// streamClient is a client of the current target for streams (log tails,
// staging logs) that may outlive any fixed request timeout: only the wait
// for the response headers is bounded.
func (k *cli) streamClient(cl *client.Client) (*client.Client, error) {
	hc := k.hc
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = time.Minute
		hc = &http.Client{Transport: tr}
	}
	sc, err := client.New(k.currentTarget(), hc)
	if err != nil {
		return nil, usagef("bad target: %w", err)
	}
	sc.SetToken(cl.Token())
	return sc, nil
}

func (k *cli) newClient(target string) (*client.Client, error) {
	cl, err := client.New(target, k.httpClient())
	if err != nil {
		return nil, usagef("bad target %q: %w", target, err)
	}
	return cl, nil
}

// client returns a client of the current target carrying its stored
// token; with login it fails when there is none.
func (k *cli) client(login bool) (*client.Client, error) {
	t := k.currentTarget()
	if t == "" {
		return nil, usagef("no target: run kiln target URL, or pass --target")
	}
	cl, err := k.newClient(t)
	if err != nil {
		return nil, err
	}
	a := k.cfg.Auth[t]
	if login && a.Token == "" {
		return nil, errNotLoggedIn
	}
	cl.SetToken(a.Token)
	return cl, nil
}

// user returns the logged-in user of the current target.
func (k *cli) user() string { return k.cfg.Auth[k.currentTarget()].User }

// say prints progress text unless --quiet or --json.
func (k *cli) say(format string, a ...any) {
	if k.quiet || k.json {
		return
	}
	fmt.Fprintf(k.out, format, a...)
}

// tty reports whether progress may be drawn on stdout.
func (k *cli) tty() bool { return isTerminal(k.out) }

// ask returns val if set, else reads it from a terminal stdin; with no
// terminal it fails with a usage error naming flag, so that nothing ever
// waits on a closed or piped stdin.
func (k *cli) ask(val, prompt, flag string, secret bool) (string, error) {
	if val != "" {
		return val, nil
	}
	f, ok := k.in.(*os.File)
	if !ok || !isTerminal(f) {
		return "", usagef("%s is required (pass %s; stdin is not a terminal)", strings.ToLower(prompt), flag)
	}
	fmt.Fprintf(k.err, "%s: ", prompt)
	if secret {
		restore := noEcho(f)
		defer func() { restore(); fmt.Fprintln(k.err) }()
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read %s: %w", prompt, err)
		}
		return "", usagef("%s is required (pass %s)", strings.ToLower(prompt), flag)
	}
	return line, nil
}

// confirm asks a yes/no question unless force; with no terminal it fails
// with a usage error asking for --force.
func (k *cli) confirm(force bool, question string) error {
	if force {
		return nil
	}
	ans, err := k.ask("", question+" [y/N]", "--force", false)
	if err != nil {
		var ee *exitErr
		if errors.As(err, &ee) && ee.code == exitUsage {
			return usagef("refusing to %s without confirmation (pass --force)", strings.TrimSuffix(strings.ToLower(question), "?"))
		}
		return err
	}
	if a := strings.ToLower(ans); a != "y" && a != "yes" {
		return withCode(exitError, errors.New("aborted"))
	}
	return nil
}
