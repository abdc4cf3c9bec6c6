package rolemain_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/internal/rolemain"
)

func TestEnvName(t *testing.T) {
	for _, tt := range []struct{ flag, want string }{
		{"nats", "KILN_NATS"},
		{"data-dir", "KILN_DATA_DIR"},
		{"empty-route-grace", "KILN_EMPTY_ROUTE_GRACE"},
		{"log-level", "KILN_LOG_LEVEL"},
	} {
		if got := rolemain.EnvName(tt.flag); got != tt.want {
			t.Errorf("EnvName(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}
}

// testFlags are the flags of a made-up role.
type testFlags struct {
	Addr    string
	Memory  int
	Grace   time.Duration
	Verbose bool
}

func newTestFlags(f *testFlags) *flag.FlagSet {
	fset := flag.NewFlagSet("test", flag.ContinueOnError)
	fset.SetOutput(io.Discard)
	fset.StringVar(&f.Addr, "addr", "127.0.0.1:9000", "listen address")
	fset.IntVar(&f.Memory, "memory-mb", 64, "memory")
	fset.DurationVar(&f.Grace, "grace", time.Second, "grace")
	fset.BoolVar(&f.Verbose, "verbose", false, "verbose")
	return fset
}

// lookupIn reads variables from env instead of the process's environment.
func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

func TestParseFlags(t *testing.T) {
	defaults := testFlags{Addr: "127.0.0.1:9000", Memory: 64, Grace: time.Second}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    testFlags
		wantErr []string // substrings of the error; none for no error
	}{
		{name: "defaults", want: defaults},
		{name: "flags", args: []string{"--addr", ":0", "--memory-mb", "128", "--verbose"},
			want: testFlags{Addr: ":0", Memory: 128, Grace: time.Second, Verbose: true}},
		{name: "env", env: map[string]string{"KILN_MEMORY_MB": "512", "KILN_GRACE": "5s", "KILN_VERBOSE": "true"},
			want: testFlags{Addr: "127.0.0.1:9000", Memory: 512, Grace: 5 * time.Second, Verbose: true}},
		{name: "flag beats env", args: []string{"--addr", "flag:1"}, env: map[string]string{"KILN_ADDR": "env:1"},
			want: testFlags{Addr: "flag:1", Memory: 64, Grace: time.Second}},
		{name: "empty variable applies", env: map[string]string{"KILN_ADDR": ""},
			want: testFlags{Memory: 64, Grace: time.Second}},
		{name: "other variables ignored", env: map[string]string{"ADDR": "x", "KILN_ADDRESS": "y"}, want: defaults},
		{name: "bad variable", env: map[string]string{"KILN_MEMORY_MB": "lots"}, wantErr: []string{"KILN_MEMORY_MB"}},
		{name: "bad variables all named", env: map[string]string{"KILN_MEMORY_MB": "lots", "KILN_GRACE": "soon"},
			wantErr: []string{"KILN_MEMORY_MB", "KILN_GRACE"}},
		{name: "bad flag", args: []string{"--memory-mb", "lots"}, wantErr: []string{"memory-mb"}},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: []string{"nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got testFlags
			err := rolemain.ParseFlags(newTestFlags(&got), tt.args, lookupIn(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("ParseFlags succeeded")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("ParseFlags error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		level string
		want  []string // events that get through, of debug-event…error-event
	}{
		{"debug", []string{"debug-event", "info-event", "warn-event", "error-event"}},
		{"info", []string{"info-event", "warn-event", "error-event"}},
		{"WARN", []string{"warn-event", "error-event"}},
		{"error", []string{"error-event"}},
		{"", []string{"info-event", "warn-event", "error-event"}},
		{"loud", []string{"info-event", "warn-event", "error-event"}},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			l := rolemain.NewLogger(&buf, tt.level)
			l.Debug("debug-event")
			l.Info("info-event")
			l.Warn("warn-event")
			l.Error("error-event")
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				for _, f := range strings.Fields(line) {
					if ev, ok := strings.CutPrefix(f, "msg="); ok {
						got = append(got, ev)
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("logged events (-want +got):\n%s", diff)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	ch chan struct{}
	b  bytes.Buffer
}

func newSyncBuffer() *syncBuffer {
	s := &syncBuffer{ch: make(chan struct{}, 1)}
	s.ch <- struct{}{}
	return s
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	<-s.ch
	defer func() { s.ch <- struct{}{} }()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	<-s.ch
	defer func() { s.ch <- struct{}{} }()
	return s.b.String()
}

func TestCommandMain(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		runErr     error
		wantStatus int
		wantStderr []string // substrings of what the command writes to stderr
		wantLevel  slog.Level
		wantRun    bool
	}{
		{name: "ok", wantStatus: rolemain.ExitOK, wantRun: true, wantLevel: slog.LevelInfo},
		{name: "failure", runErr: errBoom, wantStatus: rolemain.ExitError, wantRun: true,
			wantStderr: []string{"level=ERROR", "msg=test-failed", "err=boom"}},
		{name: "log level flag", args: []string{"--log-level", "debug"}, wantStatus: rolemain.ExitOK, wantRun: true,
			wantLevel: slog.LevelDebug},
		{name: "log level env", env: map[string]string{"KILN_LOG_LEVEL": "error"}, wantStatus: rolemain.ExitOK,
			wantRun: true, wantLevel: slog.LevelError},
		{name: "bad env", env: map[string]string{"KILN_MEMORY_MB": "lots"}, wantStatus: rolemain.ExitUsage,
			wantStderr: []string{"KILN_MEMORY_MB"}},
		{name: "bad flag", args: []string{"--memory-mb", "x"}, wantStatus: rolemain.ExitUsage},
		{name: "help", args: []string{"-h"}, wantStatus: rolemain.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f testFlags
			stderr := newSyncBuffer()
			ran := false
			var level slog.Level
			cmd := rolemain.Command{
				Name:  "test",
				Flags: newTestFlags(&f),
				Run: func(ctx context.Context, logger *slog.Logger) error {
					ran = true
					for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
						if logger.Enabled(ctx, l) {
							level = l
							break
						}
					}
					return tt.runErr
				},
				LookupEnv: lookupIn(tt.env),
				Stderr:    stderr,
			}
			if got := cmd.Main(tt.args); got != tt.wantStatus {
				t.Errorf("Main = %d, want %d; stderr:\n%s", got, tt.wantStatus, stderr)
			}
			if ran != tt.wantRun {
				t.Errorf("Run called: %v, want %v", ran, tt.wantRun)
			}
			if ran && level != tt.wantLevel {
				t.Errorf("logger level %v, want %v", level, tt.wantLevel)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		})
	}
}

// TestCommandSignal checks that SIGTERM ends the context Run gets, so that
// a role shuts down gracefully and exits 0.
func TestCommandSignal(t *testing.T) {
	cmd := rolemain.Command{
		Name: "test",
		Run: func(ctx context.Context, _ *slog.Logger) error {
			// The signal is caught from before Run is called.
			if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("context not cancelled by SIGTERM")
			}
		},
		Stderr: io.Discard,
	}
	if got := cmd.Execute("info"); got != rolemain.ExitOK {
		t.Errorf("Execute = %d, want %d", got, rolemain.ExitOK)
	}
}
