package healthmgr

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// Config configures a Manager. Start from DefaultConfig.
type Config struct {
	// Index distinguishes health managers in component announcements.
	Index int
	// Host is the "ip:port" of Handler as others should reach it; it is
	// announced on vcap.component.announce.
	Host string
	// StatusUser and StatusPassword protect /varz with basic auth when set.
	StatusUser, StatusPassword string

	// Policy is the analysis timing handed to drift.Analyze: heartbeat
	// TTL (after which an instance, and a DEA, is gone), grace after an
	// app update, the suppression window for repeated requests and crash
	// backoff.
	Policy drift.Policy

	// StartupWait is how long the manager only listens after it starts
	// (and after the bus comes back) before it sends any request, so it
	// never starts or stops what it has not yet seen.
	StartupWait time.Duration
	// AnalysisInterval is the period of the full analysis pass.
	AnalysisInterval time.Duration
	// AnalysisDebounce is how long changes (heartbeats with news, desired
	// state changes, stops) are collected before the apps they touch are
	// analysed. Crashes and instances leaving with their DEA (shutdown,
	// evacuation) skip it: they are analysed at once.
	AnalysisDebounce time.Duration

	// DesiredInterval is the period of the full desired-state reload.
	DesiredInterval time.Duration
	// DesiredRetry is the wait before reloading again after a failure.
	DesiredRetry time.Duration
	// DesiredTimeout bounds one full reload.
	DesiredTimeout time.Duration
	// ReloadDebounce collects droplet.updated notices before a full
	// reload, for sources that cannot read one app (see AppSource).
	ReloadDebounce time.Duration

	// LeaderElection makes the health managers on one bus elect a leader:
	// only it sends requests; the others keep their state warm to take
	// over. Off, every manager acts, and each skips requests it saw
	// another send within Policy.RetryAfter. Either way each query is
	// answered by one manager (see QueryQueue).
	LeaderElection bool
	// LeaseInterval is how often a manager announces itself on
	// LeaseSubject; LeaseTTL is how long an announcement stays valid.
	LeaseInterval, LeaseTTL time.Duration
}

// DefaultConfig returns the defaults: drift.DefaultPolicy (HM9000's timing
// for 10 s DEA heartbeats) and the original health manager's intervals.
func DefaultConfig() Config {
	return Config{
		Policy: drift.DefaultPolicy(),
		// One DEA heartbeat interval: every DEA answers healthmanager.start
		// at once and heartbeats every 10 s regardless.
		StartupWait:      10 * time.Second,
		AnalysisInterval: 10 * time.Second,
		// Long enough to batch a heartbeat storm, short against the 10 s
		// heartbeat period.
		AnalysisDebounce: 100 * time.Millisecond,
		// database_scan of the original and HM9000's bulk fetch period.
		DesiredInterval: 60 * time.Second,
		DesiredRetry:    5 * time.Second,
		// HM9000 gave each bulk request 10 s; a reload is many requests.
		DesiredTimeout: 30 * time.Second,
		ReloadDebounce: time.Second,
		LeaderElection: true,
		LeaseInterval:  2 * time.Second,
		// Three missed announcements. The interval is well inside
		// StartupWait, so a new manager knows its elders before it may act.
		LeaseTTL: 6 * time.Second,
	}
}

// Validate reports every problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	var errs []error
	check := func(bad bool, msg string) {
		if bad {
			errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidConfig, msg))
		}
	}
	if err := c.Policy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalidConfig, err))
	}
	check(c.StartupWait < 0, "StartupWait must not be negative")
	check(c.AnalysisInterval <= 0, "AnalysisInterval must be positive")
	check(c.AnalysisDebounce < 0 || c.ReloadDebounce < 0, "debounce windows must not be negative")
	check(c.DesiredInterval <= 0 || c.DesiredRetry <= 0 || c.DesiredTimeout <= 0,
		"DesiredInterval, DesiredRetry and DesiredTimeout must be positive")
	if c.LeaderElection {
		check(c.LeaseInterval <= 0 || c.LeaseTTL <= c.LeaseInterval, "need 0 < LeaseInterval < LeaseTTL")
		check(c.LeaseInterval >= c.StartupWait && c.StartupWait > 0,
			"LeaseInterval must be shorter than StartupWait, so a new manager hears its peers before it acts")
	}
	return errors.Join(errs...)
}

// Deps are the manager's collaborators.
type Deps struct {
	// Bus carries heartbeats, exits, adverts, queries and requests. Required.
	Bus bus.Bus
	// Desired is where the controller's desired state is read. Required;
	// NewBulkSource reads a controller's bulk API.
	Desired DesiredSource
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the manager's metrics; nil registers none. If it
	// is also a prometheus.Gatherer, Handler serves /metrics from it.
	Registerer prometheus.Registerer
	// Clock tells the time; nil means SystemClock.
	Clock Clock
}
