package bus

import "errors"

var (
	// ErrClosed is returned by any operation on a closed or drained bus.
	ErrClosed = errors.New("bus: connection closed")
	// ErrBadSubject is returned for a subject that is empty, has empty
	// tokens or whitespace, or misplaces a wildcard.
	ErrBadSubject = errors.New("bus: invalid subject")
	// ErrBadQueue is returned for an invalid queue group name.
	ErrBadQueue = errors.New("bus: invalid queue group")
	// ErrNoResponders is returned by Request when no subscriber listens on
	// the subject.
	ErrNoResponders = errors.New("bus: no responders")
	// ErrBadSubscription is returned when unsubscribing twice or using a
	// subscription of a closed bus.
	ErrBadSubscription = errors.New("bus: invalid subscription")
	// ErrNoReply is returned by RespondJSON for a message without reply subject.
	ErrNoReply = errors.New("bus: message has no reply subject")
	// ErrNilHandler is returned when subscribing with a nil handler.
	ErrNilHandler = errors.New("bus: nil handler")
)
