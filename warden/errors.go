package warden

import "errors"

// Sentinel errors. Implementations wrap them with context; test with
// errors.Is.
var (
	// ErrNotFound: no container, process or file with that name.
	ErrNotFound = errors.New("warden: not found")
	// ErrExists: a container handle, process id or host port is taken.
	ErrExists = errors.New("warden: already exists")
	// ErrInvalidSpec: a container or process spec, or a handle, is malformed.
	ErrInvalidSpec = errors.New("warden: invalid spec")
	// ErrInvalidPath: a container path or tar entry leaves the container.
	ErrInvalidPath = errors.New("warden: invalid path")
	// ErrLimitExceeded: a container limit or the backend's capacity would
	// be exceeded.
	ErrLimitExceeded = errors.New("warden: limit exceeded")
	// ErrStopped: the container is already stopped.
	ErrStopped = errors.New("warden: container already stopped")
	// ErrProcessDone: the process has already exited.
	ErrProcessDone = errors.New("warden: process already exited")
)
