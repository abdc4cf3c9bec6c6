package dea

import "errors"

// Sentinel errors; test with errors.Is.
var (
	// ErrInvalidConfig is wrapped by Config.Validate and New.
	ErrInvalidConfig = errors.New("dea: invalid config")
	// ErrSHA1Mismatch: a fetched droplet does not hash to the SHA1 the
	// start message named.
	ErrSHA1Mismatch = errors.New("dea: droplet sha1 mismatch")
	// ErrDropletTooLarge: a fetched droplet exceeds Config.MaxDropletBytes.
	ErrDropletTooLarge = errors.New("dea: droplet too large")
	// ErrHealthCheck: an instance did not pass its health check in time.
	ErrHealthCheck = errors.New("dea: health check failed")
	// ErrNoCapacity: a start message does not fit this DEA's capacity.
	ErrNoCapacity = errors.New("dea: no capacity")
	// ErrBadSignature: a file server URL is unsigned, forged or expired.
	ErrBadSignature = errors.New("dea: bad or expired file url signature")
	// ErrRunning: Run was called twice.
	ErrRunning = errors.New("dea: already running")
)
