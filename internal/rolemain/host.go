package rolemain

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
	"github.com/kiln-paas/kiln/warden/process"
)

// ErrUnknownBackend is returned by Backend for a kind other than auto,
// linux or process.
var ErrUnknownBackend = errors.New("unknown backend (auto, linux or process)")

// exitPollInterval is how often a warden/process backend checks a
// reattached process (an instance left running by the previous DEA on the
// same data directory): a crash is then reported well within the health
// manager's heartbeat TTL.
const exitPollInterval = 100 * time.Millisecond

// Backend returns the container backend a DEA runs its instances in, kept
// under dataDir, and a function that closes it. kind is "linux"
// (warden/linux in dataDir/containers-linux, which needs root on Linux),
// "process" (warden/process in dataDir/containers: plain host processes,
// logged as a warning) or "auto": linux when the host allows it, else
// process with a warning that says why.
func Backend(kind, dataDir string, logger *slog.Logger) (warden.Backend, func(), error) {
	useLinux := kind == "linux"
	switch kind {
	case "auto":
		if err := linux.Check(); err != nil {
			logger.Warn("warden-linux-unavailable", "err", err, "fallback", "warden/process (no isolation)")
		} else {
			useLinux = true
		}
	case "linux":
	case "process":
		logger.Warn("warden-process", "note", "apps run as plain host processes without isolation")
	default:
		return nil, nil, fmt.Errorf("%w: %q", ErrUnknownBackend, kind)
	}
	if useLinux {
		cfg := linux.DefaultConfig()
		cfg.Root = filepath.Join(dataDir, "containers-linux")
		cfg.Logger = logger.With("role", "warden")
		b, err := linux.New(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("warden/linux: %w", err)
		}
		logger.Info("warden-backend", "kind", "linux")
		return b, func() { _ = b.Close() }, nil
	}
	b, err := processBackend(filepath.Join(dataDir, "containers"), logger)
	if err != nil {
		return nil, nil, fmt.Errorf("warden/process: %w", err)
	}
	return b, func() { _ = b.Close() }, nil
}

// processBackend returns a warden/process backend kept in root, logging
// with logger under role=warden.
func processBackend(root string, logger *slog.Logger) (*process.Backend, error) {
	cfg := process.DefaultConfig()
	cfg.Root = root
	cfg.ExitPollInterval = exitPollInterval
	cfg.Logger = logger.With("role", "warden")
	return process.New(cfg)
}

// Stager returns the stager of a controller on this host and a function
// that closes its container backend. Builds run in a warden/process backend
// kept in dataDir/staging: buildpacks use the host's toolchains, so they run
// as host processes, without isolation. Build processes get this process's
// PATH (plus /usr/local/go/bin when go is not on it), the build caches live
// in dataDir/staging-cache, temporary files in tempDir, and the Go buildpack
// shares the host's GOCACHE (when go can tell it) so that builds reuse what
// the host compiled.
func Stager(dataDir, tempDir string, logger *slog.Logger) (*staging.Stager, func(), error) {
	backend, err := processBackend(filepath.Join(dataDir, "staging"), logger)
	if err != nil {
		return nil, nil, fmt.Errorf("staging backend: %w", err)
	}
	s, err := staging.NewStager(stagingConfig(dataDir, tempDir), backend, logger.With("role", "staging"))
	if err != nil {
		_ = backend.Close()
		return nil, nil, fmt.Errorf("staging: %w", err)
	}
	return s, func() { _ = backend.Close() }, nil
}

// stagingConfig is staging's default configuration for this host, as
// Stager describes it.
func stagingConfig(dataDir, tempDir string) staging.Config {
	c := staging.DefaultConfig()
	c.Path = staging.HostPath()
	c.CacheDir = filepath.Join(dataDir, "staging-cache")
	c.TempDir = tempDir
	c.Buildpacks = staging.BuiltinsSharingGoCache(staging.HostGoCache())
	return c
}

// LoadKey reads the controller's token signing key at path, creating it
// (32 random bytes, hex encoded, mode 0600) when it is missing or empty so
// that login tokens survive restarts.
func LoadKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return b, nil
	}
	key := []byte(RandomHex(32))
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return key, nil
}

// RandomHex is n random bytes, hex encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the process instead
	return hex.EncodeToString(b)
}
