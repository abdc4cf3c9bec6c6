package osb

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrUnauthorized: the broker rejected the credentials (401 or 403).
	ErrUnauthorized = errors.New("osb: unauthorized")
	// ErrAPIVersion: the broker rejected the X-Broker-API-Version (412).
	ErrAPIVersion = errors.New("osb: unsupported API version")
)

// OSB error codes (the "error" field of an error body) kiln reads and writes.
const (
	CodeAsyncRequired    = "AsyncRequired"
	CodeConcurrencyError = "ConcurrencyError"
)

// Error is a broker's error response as the client saw it. Err is the
// sentinel the status and code map to (a services error such as
// services.ErrInstanceExists, ErrUnauthorized, ErrAPIVersion, or nil for
// an unexpected status), so errors.Is works on it, and Description keeps
// the broker's explanation.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	// Code is the body's machine-readable "error" field, if any.
	Code string
	// Description is the body's human-readable "description" field.
	Description string
	Err         error
}

// Error formats e with its method, path, status, code and description.
func (e *Error) Error() string {
	msg := fmt.Sprintf("osb: %s %s: %d %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the sentinel error e maps to.
func (e *Error) Unwrap() error { return e.Err }

// errorBody is the OSB error response body.
type errorBody struct {
	Error       string `json:"error,omitempty"`
	Description string `json:"description,omitempty"`
}
