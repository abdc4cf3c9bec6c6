// Package rolemain holds what the main functions of kiln's role commands
// (examples/kernel, controller, dea, router, healthmgr and broker) share, so
// that each main only assembles its role: the KILN_* environment variables
// behind the flags, the logger chosen by --log-level, a context ended by
// SIGINT or SIGTERM, serving an http.Handler with a graceful shutdown, the
// "name=url" lines and "ready" a command prints once it serves, the bus
// connection, the DEA's container backend and the controller's staging
// setup on the host.
//
// A role's main is then:
//
//	var o options
//	fset := flag.NewFlagSet("router", flag.ExitOnError)
//	fset.StringVar(&o.addr, "addr", "127.0.0.1:8080", "proxy listen address")
//	cmd := rolemain.Command{Name: "router", Flags: fset,
//		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, logger) }}
//	os.Exit(cmd.Main(os.Args[1:]))
//
// It is for commands only: unlike kiln's library packages it reads the
// process's environment and signals (through Command, whose fields let tests
// replace them).
package rolemain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// EnvPrefix starts the name of every flag's environment variable.
const EnvPrefix = "KILN_"

// Exit statuses returned by Command.Main and Command.Execute.
const (
	ExitOK    = 0 // the role stopped without error (or -help was asked for)
	ExitError = 1 // the role failed
	ExitUsage = 2 // bad flags or environment variables
)

// Command is what a role's main hands over: its name, its flags and the
// function that runs the role.
type Command struct {
	// Name is the role's name. A failure of Run is logged as the event
	// "<Name>-failed".
	Name string
	// Flags are the role's flags. Main adds --log-level to them.
	Flags *flag.FlagSet
	// Run runs the role until ctx ends, which happens on SIGINT or SIGTERM.
	Run func(ctx context.Context, logger *slog.Logger) error
	// LookupEnv reads environment variables; nil means os.LookupEnv.
	LookupEnv func(key string) (string, bool)
	// Stderr receives the logs and the errors about flags; nil means
	// os.Stderr.
	Stderr io.Writer
}

// Main parses args into c.Flags, which it first gives the --log-level flag
// (debug, info, warn or error; default info), sets every flag not on the
// command line from its environment variable (see ApplyEnv) and then runs
// the role as Execute does. It returns the process's exit status: ExitUsage
// for bad flags or variables, else Execute's.
//
// With a flag.ExitOnError flag set, a bad flag ends the process in Parse,
// as the flag package does. Main is called once per Command: a second call
// would define --log-level again, which panics.
func (c *Command) Main(args []string) int {
	level := c.Flags.String("log-level", "info", "log level: debug, info, warn, error")
	if err := ParseFlags(c.Flags, args, c.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		fmt.Fprintln(c.stderr(), err)
		return ExitUsage
	}
	return c.Execute(*level)
}

// Execute runs c.Run with a logger at level writing text to c.Stderr and a
// context cancelled on SIGINT or SIGTERM. When Run fails it logs
// "<Name>-failed" with the error and returns ExitError; otherwise ExitOK.
func (c *Command) Execute(level string) int {
	logger := NewLogger(c.stderr(), level)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx, logger); err != nil {
		logger.Error(c.Name+"-failed", "err", err)
		return ExitError
	}
	return ExitOK
}

func (c *Command) stderr() io.Writer {
	if c.Stderr == nil {
		return os.Stderr
	}
	return c.Stderr
}

// EnvName is the environment variable of the flag called name: EnvPrefix
// and the name in upper case with dashes as underscores (data-dir is
// KILN_DATA_DIR).
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// ApplyEnv sets every flag of fset that was not given on the command line
// (fset must be parsed) from its environment variable (EnvName), read with
// lookup; nil means os.LookupEnv. A variable that is set, even to "", is
// applied. The errors name the variables whose values the flags refused.
func ApplyEnv(fset *flag.FlagSet, lookup func(key string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	given := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fset.VisitAll(func(f *flag.Flag) {
		name := EnvName(f.Name)
		if v, ok := lookup(name); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// ParseFlags parses args into fset and then applies the environment to the
// flags args did not set (ApplyEnv with lookup): a flag on the command line
// wins over its variable.
func ParseFlags(fset *flag.FlagSet, args []string, lookup func(key string) (string, bool)) error {
	if err := fset.Parse(args); err != nil {
		return err
	}
	return ApplyEnv(fset, lookup)
}

// NewLogger returns a text logger writing to w at level (debug, info, warn
// or error, as slog.Level spells them); an unknown level means info.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
