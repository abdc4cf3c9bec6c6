package healthmgr

import "errors"

var (
	// ErrInvalidConfig is wrapped by Config.Validate errors.
	ErrInvalidConfig = errors.New("healthmgr: invalid config")
	// ErrMissingDependency is returned by New when Deps lacks the bus or
	// the desired-state source.
	ErrMissingDependency = errors.New("healthmgr: missing dependency")
	// ErrRunning is returned by Run when the manager is already running
	// (or has run: a Manager runs once).
	ErrRunning = errors.New("healthmgr: Run called twice")
	// ErrDesiredUnavailable is wrapped by DesiredSource errors when the
	// source cannot be reached (HTTP failure, bad status, no credentials).
	ErrDesiredUnavailable = errors.New("healthmgr: desired state unavailable")
	// ErrBadPage is wrapped by BulkSource errors for a malformed page of
	// the bulk API (bad JSON, or a token that does not advance).
	ErrBadPage = errors.New("healthmgr: malformed bulk page")
)
