package services

import (
	"context"
	"fmt"
	"time"
)

// DefaultPollInterval is the polling interval WaitForOperation uses when
// given none. One second matches how often the original gateways polled
// their own state (PROTOCOL.md §6.1, handle_fetch_interval) and keeps a
// typical provision of a few seconds responsive without hammering a broker.
const DefaultPollInterval = time.Second

// WaitForOperation polls b.LastOperation for req every interval (or
// DefaultPollInterval when interval <= 0) until the operation leaves the
// "in progress" state or ctx ends.
//
// It returns the final LastOperation. A "failed" operation is returned
// together with an error wrapping ErrOperationFailed that carries the
// broker's description. Errors from LastOperation end the wait at once and
// are returned wrapped; note that a broker answers a poll for a finished
// asynchronous deprovision with ErrInstanceNotFound (OSB "410 Gone"), which
// callers waiting on a deprovision should treat as success. An unknown
// state is an error: the OSB API defines only the three State constants.
func WaitForOperation(ctx context.Context, b Broker, req LastOperationRequest, interval time.Duration) (LastOperation, error) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	var t *time.Timer
	for {
		op, err := b.LastOperation(ctx, req)
		if err != nil {
			return LastOperation{}, fmt.Errorf("services: wait for operation %q on %s: %w", req.Operation, req.InstanceID, err)
		}
		switch op.State {
		case StateSucceeded:
			return op, nil
		case StateFailed:
			return op, fmt.Errorf("services: operation %q on %s: %w: %s", req.Operation, req.InstanceID, ErrOperationFailed, op.Description)
		case StateInProgress:
		default:
			return op, fmt.Errorf("services: operation %q on %s: unknown state %q", req.Operation, req.InstanceID, op.State)
		}
		if t == nil {
			t = time.NewTimer(interval)
			defer t.Stop()
		} else {
			t.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return op, fmt.Errorf("services: wait for operation %q on %s: %w", req.Operation, req.InstanceID, context.Cause(ctx))
		case <-t.C:
		}
	}
}
