package natsbus

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
)

func TestServerConfigValidate(t *testing.T) {
	tests := []validateCase[ServerConfig]{
		{"default", func(*ServerConfig) {}, true},
		{"fixed port", func(c *ServerConfig) { c.Port = 4222 }, true},
		{"empty host", func(c *ServerConfig) { c.Host = "" }, false},
		{"port too low", func(c *ServerConfig) { c.Port = -2 }, false},
		{"port too high", func(c *ServerConfig) { c.Port = 65536 }, false},
		{"user and password", func(c *ServerConfig) { c.User, c.Password = "u", "p" }, true},
		{"user alone", func(c *ServerConfig) { c.User = "u" }, false},
		{"password alone", func(c *ServerConfig) { c.Password = "p" }, false},
		{"token", func(c *ServerConfig) { c.Token = "t" }, true},
		{"token and user", func(c *ServerConfig) { c.User, c.Password, c.Token = "u", "p", "t" }, false},
		{"jetstream with dir", func(c *ServerConfig) { c.JetStream, c.StoreDir = true, "/tmp/x" }, true},
		{"jetstream without dir", func(c *ServerConfig) { c.JetStream = true }, false},
		{"zero ready timeout", func(c *ServerConfig) { c.ReadyTimeout = 0 }, false},
	}
	checkValidate(t, DefaultServerConfig, tests)
	if _, err := RunServer(ServerConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("RunServer(zero config) = %v, want ErrInvalidConfig", err)
	}
}

func TestRunServer(t *testing.T) {
	var logs syncbuf.Buffer
	cfg := DefaultServerConfig()
	cfg.Name = "kiln-test"
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := runServerT(t, cfg)
	want := "nats://127.0.0.1:" + strconv.Itoa(s.Port())
	if s.Port() <= 0 || s.ClientURL() != want {
		t.Errorf("Port, ClientURL = %d, %q; want a port and %q", s.Port(), s.ClientURL(), want)
	}
	if err := s.ReadyForConnections(time.Second); err != nil {
		t.Errorf("ReadyForConnections: %v", err)
	}
	if got := s.NATSServer().Name(); got != "kiln-test" {
		t.Errorf("server name %q, want kiln-test", got)
	}
	if !strings.Contains(logs.String(), "msg=nats-server-notice") {
		t.Errorf("no notice logged:\n%s", logs.String())
	}
	c := connectT(t, testConfig(s.ClientURL()))
	if !c.Connected() {
		t.Error("not connected to the running server")
	}
}

func TestRunServerPortTaken(t *testing.T) {
	first := RunTestServer(t)
	cfg := DefaultServerConfig()
	cfg.Port = first.Port()
	start := time.Now()
	s, err := RunServer(cfg)
	if err == nil {
		s.Shutdown()
		t.Fatal("second server on a taken port started")
	}
	if !errors.Is(err, ErrServerNotReady) {
		t.Errorf("RunServer = %v, want ErrServerNotReady", err)
	}
	// The listen failure is reported at once, not after ReadyTimeout.
	if d := time.Since(start); d > cfg.ReadyTimeout/2 {
		t.Errorf("failure reported after %v", d)
	}
}

func TestRunServerJetStream(t *testing.T) {
	cfg := DefaultServerConfig()
	cfg.JetStream = true
	cfg.StoreDir = t.TempDir()
	s := runServerT(t, cfg)
	if !s.NATSServer().JetStreamEnabled() {
		t.Error("JetStream not enabled")
	}
	if RunTestServer(t).NATSServer().JetStreamEnabled() {
		t.Error("JetStream enabled by default")
	}
}

func TestServerRun(t *testing.T) {
	t.Run("context ends", func(t *testing.T) {
		s := RunTestServer(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
		if s.NATSServer().Running() {
			t.Error("server still running after Run returned")
		}
	})
	t.Run("shut down elsewhere", func(t *testing.T) {
		s := RunTestServer(t)
		done := make(chan error, 1)
		go func() { done <- s.Run(t.Context()) }()
		s.Shutdown()
		select {
		case err := <-done:
			if !errors.Is(err, ErrServerStopped) {
				t.Errorf("Run = %v, want ErrServerStopped", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after Shutdown")
		}
		s.Shutdown() // a second Shutdown is harmless
	})
}
