package dea

import (
	"errors"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea/placement"
)

// Config configures a DEA. Start from DefaultConfig; BaseDir is required.
type Config struct {
	// ID is the DEA's id (used in dea.<id>.start). Empty means reuse the id
	// of the snapshot in BaseDir, or else a fresh UUID.
	ID string
	// Index distinguishes DEAs in component announcements.
	Index int
	// Host is the address routers and peers should use for this DEA's
	// instances. Empty means the backend's container host IP.
	Host string
	// FileServerURL is the base URL (scheme://host:port) at which others
	// reach Handler; find.droplet replies carry signed URLs below it.
	// Empty means no file URLs are handed out.
	FileServerURL string
	// BaseDir holds the droplet cache and the instance snapshot. Required.
	BaseDir string

	// Stacks are the stacks (runtimes) this DEA runs.
	Stacks []string
	// MemoryMB, DiskMB and MaxInstances bound what the DEA accepts. Zero
	// DiskMB means disk is not accounted; zero MaxInstances means no limit.
	MemoryMB     int
	DiskMB       int
	MaxInstances int
	// DefaultLimits apply to start messages that give none (the original's
	// 512 MB memory, 256 MB disk, 1024 file descriptors).
	DefaultLimits protocol.Limits

	// Placement scores this DEA against its peers for dea.discover.
	Placement placement.Config
	// HoldTimeout is how long memory reserved by a discover reply stays
	// reserved without a start message, after the reply is sent.
	HoldTimeout time.Duration

	// AdvertiseInterval is the period of dea.advertise (also sent on change).
	AdvertiseInterval time.Duration
	// HeartbeatInterval is the period of dea.heartbeat.
	HeartbeatInterval time.Duration
	// RegisterInterval re-registers routes until a router asks for another
	// interval in router.start.
	RegisterInterval time.Duration
	// GreetTimeout bounds the router.greet request made at start.
	GreetTimeout time.Duration

	// HealthCheckTimeout is how long an instance may take to become healthy
	// when its start message does not say.
	HealthCheckTimeout time.Duration
	// HealthCheckInterval is the pause between health check attempts.
	HealthCheckInterval time.Duration
	// DrainTimeout is how long a stopped instance keeps running after its
	// routes were unregistered, so in-flight requests finish.
	DrainTimeout time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// CrashRetention is how long a crashed instance's record and files are
	// kept for crash logs.
	CrashRetention time.Duration
	// EvacuationDelay is how long Evacuate waits, after telling health
	// managers, before stopping instances.
	EvacuationDelay time.Duration
	// LeaveRunning makes Run, when its context ends, snapshot and leave
	// instances running for the next DEA on BaseDir to recover (a DEA
	// upgrade) instead of stopping them.
	LeaveRunning bool

	// DropletCacheBytes bounds the on-disk droplet cache (least recently
	// used droplets are evicted).
	DropletCacheBytes int64
	// MaxDropletBytes bounds one droplet download.
	MaxDropletBytes int64

	// LogRate and LogBurst limit each instance's log lines on the bus
	// (lines per second and bucket size); excess lines are dropped and
	// counted. Lines always reach the log files.
	LogRate  float64
	LogBurst int
	// MaxLogLine bounds one log line on the bus; longer lines are split.
	MaxLogLine int

	// FileURLTTL is how long a signed file URL stays valid.
	FileURLTTL time.Duration
	// StatusUser and StatusPassword protect /varz with basic auth when set.
	StatusUser, StatusPassword string
}

// DefaultConfig returns the defaults: the original DEA's intervals and
// limits where it had them (PROTOCOL.md §3.6).
func DefaultConfig() Config {
	return Config{
		Stacks:        []string{"linux"},
		MemoryMB:      4096,
		DefaultLimits: protocol.Limits{Mem: 512, Disk: 256, FDs: 1024},
		Placement:     placement.DefaultConfig(),
		// A start follows the reply within a controller round trip; 5 s
		// tolerates a slow controller without pinning memory for long.
		HoldTimeout:       5 * time.Second,
		AdvertiseInterval: 5 * time.Second,
		HeartbeatInterval: 10 * time.Second,
		// gorouter's default minimumRegisterIntervalInSeconds.
		RegisterInterval:    20 * time.Second,
		GreetTimeout:        time.Second,
		HealthCheckTimeout:  60 * time.Second,
		HealthCheckInterval: 100 * time.Millisecond,
		DrainTimeout:        time.Second,
		StopGrace:           10 * time.Second,
		CrashRetention:      time.Hour,
		EvacuationDelay:     30 * time.Second,
		DropletCacheBytes:   2 << 30,
		MaxDropletBytes:     1 << 30,
		// Generous for humans, small enough that a runaway printer cannot
		// flood the bus: 100 lines/s sustained with bursts of 500.
		LogRate:    100,
		LogBurst:   500,
		MaxLogLine: 4096,
		FileURLTTL: time.Hour,
	}
}

// Validate reports every problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	check := func(bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.BaseDir == "", "BaseDir is required")
	check(c.MemoryMB <= 0, "MemoryMB must be positive")
	check(c.DiskMB < 0 || c.MaxInstances < 0, "DiskMB and MaxInstances must not be negative")
	check(c.DefaultLimits.Mem <= 0, "DefaultLimits.Mem must be positive")
	check(c.HoldTimeout <= 0, "HoldTimeout must be positive")
	check(c.AdvertiseInterval <= 0 || c.HeartbeatInterval <= 0 || c.RegisterInterval <= 0,
		"AdvertiseInterval, HeartbeatInterval and RegisterInterval must be positive")
	check(c.GreetTimeout <= 0, "GreetTimeout must be positive")
	check(c.HealthCheckTimeout <= 0 || c.HealthCheckInterval <= 0, "health check timeout and interval must be positive")
	check(c.DrainTimeout < 0 || c.StopGrace < 0 || c.EvacuationDelay < 0, "DrainTimeout, StopGrace and EvacuationDelay must not be negative")
	check(c.CrashRetention < 0, "CrashRetention must not be negative")
	check(c.DropletCacheBytes <= 0 || c.MaxDropletBytes <= 0, "DropletCacheBytes and MaxDropletBytes must be positive")
	check(c.LogRate <= 0 || c.LogBurst <= 0 || c.MaxLogLine <= 0, "LogRate, LogBurst and MaxLogLine must be positive")
	check(c.FileURLTTL <= 0, "FileURLTTL must be positive")
	if err := c.Placement.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
