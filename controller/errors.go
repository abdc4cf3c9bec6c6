package controller

import (
	"errors"
	"fmt"
)

// Error is an error of the REST API: the HTTP status and the {code,
// description} body of PROTOCOL.md §1.2. Handlers return *Error values; any
// other error becomes 500 with code 111.
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the v1 error code.
	Code int
	// Description is the human-readable message.
	Description string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("controller: %d: %s", e.Code, e.Description)
}

// Is makes errors.Is match two *Error values with the same code, so a
// formatted error still matches its template (errors.Is(err, ErrAppNotFound)).
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// with returns a copy of e whose description is formatted with args.
func (e *Error) with(args ...any) *Error {
	return &Error{Status: e.Status, Code: e.Code, Description: fmt.Sprintf(e.Description, args...)}
}

// Errors of the v1 API (PROTOCOL.md §1.2) and kiln's extensions. Descriptions
// holding %s are formatted per use; errors.Is matches on the code.
var (
	ErrBadRequest          = &Error{400, 100, "Bad request: %s"}
	ErrDatabase            = &Error{500, 101, "Database error"}
	ErrLocking             = &Error{400, 102, "Optimistic locking failure: the app changed since it was read"}
	ErrSystem              = &Error{500, 111, "System Exception Encountered"}
	ErrForbidden           = &Error{403, 200, "Operation not permitted"}
	ErrUserNotFound        = &Error{403, 201, "User not found"}
	ErrHTTPSRequired       = &Error{403, 202, "HTTPS required"}
	ErrInvalidApp          = &Error{400, 300, "Invalid application description: %s"}
	ErrAppNotFound         = &Error{404, 301, "Application not found"}
	ErrNoPlaceToRun        = &Error{404, 302, "No place to run the app: %s"}
	ErrFileNotFound        = &Error{404, 303, "File not found: '%s'"}
	ErrInstanceNotFound    = &Error{400, 304, "Instance not found: '%s'"}
	ErrAppStopped          = &Error{400, 305, "Operation not permitted on a stopped app"}
	ErrFileError           = &Error{500, 306, "Error retrieving file '%s'"}
	ErrInvalidRuntime      = &Error{400, 307, "Invalid runtime [%s] for framework '%s'"}
	ErrInvalidFramework    = &Error{400, 308, "Invalid framework '%s'"}
	ErrDebugDisallowed     = &Error{400, 309, "Debugging is not allowed"}
	ErrStagingFailed       = &Error{500, 310, "Staging failed: '%s'"}
	ErrUnknownPackage      = &Error{400, 400, "Unknown package type"}
	ErrMissingResource     = &Error{400, 401, "Missing resource: %s"}
	ErrPackaging           = &Error{500, 402, "App packaging failed: '%s'"}
	ErrServiceNotFound     = &Error{404, 500, "Service not found"}
	ErrBindingNotFound     = &Error{404, 501, "Binding not found"}
	ErrServiceGateway      = &Error{502, 503, "Unexpected response from service gateway: %s"}
	ErrTooManyServices     = &Error{403, 504, "Too many Services provisioned: %s, you're allowed: %s"}
	ErrNotEnoughMemory     = &Error{403, 600, "Not enough memory capacity, you're allowed: %s"}
	ErrTooManyApps         = &Error{403, 601, "Too many applications: %s, you're allowed: %s"}
	ErrTooManyURIs         = &Error{403, 602, "Too many URIs: %s, you're allowed: %s"}
	ErrInvalidURI          = &Error{400, 700, "Invalid URI: '%s'"}
	ErrURITaken            = &Error{400, 701, "The URI: '%s' has already been taken or reserved"}
	ErrExternalURIs        = &Error{403, 702, "External URIs are not enabled for this account"}
	ErrStagingTimeout      = &Error{500, 800, "Staging timed out"}
	ErrStagingFailedV12    = &Error{500, 801, "Staging failed"}
	ErrServiceBound        = &Error{400, 506, "Service '%s' is bound to apps: %s; unbind it first"}
	ErrTooManyLogins       = &Error{429, 203, "Too many failed login attempts; try again in %s"}
	ErrTooLarge            = &Error{413, 403, "Request body too large (limit %d bytes)"}
	ErrDropletNotFound     = &Error{404, 311, "Droplet not found: '%s'"}
	ErrAlreadyExists       = &Error{400, 100, "Bad request: %s already exists"}
	ErrRolloutInProgress   = &Error{409, 312, "A rollout of this app is already in progress"}
	ErrBrokerNotRegistered = &Error{404, 507, "Service broker not found: '%s'"}
)

// ErrNoDEA is returned (wrapped) when no DEA answered dea.discover for an
// instance after the configured number of attempts.
var ErrNoDEA = errors.New("controller: no DEA can run this app")
