// Package exitstatus records how a process of one of warden's host
// backends (warden/process, warden/linux) ended, in the two steps those
// backends see: the process has exited (its output may still be on its
// way to the caller), then its exit is recorded with a status, which
// releases every waiter. A process found after a restart may be recorded
// in one step.
package exitstatus

import (
	"context"
	"sync"
)

// Exit is the end of one process. Create it with New; it is safe for
// concurrent use.
type Exit struct {
	exited chan struct{} // closed once the process has exited
	done   chan struct{} // closed once the status is recorded

	mu     sync.Mutex
	status int
}

// New returns the Exit of a process that is still running.
func New() *Exit {
	return &Exit{exited: make(chan struct{}), done: make(chan struct{})}
}

// Exited returns a channel closed once the process has exited.
func (e *Exit) Exited() <-chan struct{} { return e.exited }

// Done returns a channel closed once the exit status is recorded.
func (e *Exit) Done() <-chan struct{} { return e.done }

// MarkExited records that the process has exited, before its status is.
// Later calls, and calls after Finish, do nothing.
func (e *Exit) MarkExited() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.markExitedLocked()
}

func (e *Exit) markExitedLocked() {
	select {
	case <-e.exited:
	default:
		close(e.exited)
	}
}

// Finish records status (marking the process exited if it was not) and
// releases the waiters. Only the first call counts.
func (e *Exit) Finish(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	select {
	case <-e.done:
		return
	default:
	}
	e.status = status
	e.markExitedLocked()
	close(e.done)
}

// HasExited reports whether the process has exited.
func (e *Exit) HasExited() bool {
	select {
	case <-e.exited:
		return true
	default:
		return false
	}
}

// Wait returns the status once it is recorded, or ctx's error (unwrapped)
// if ctx ends first.
func (e *Exit) Wait(ctx context.Context) (int, error) {
	select {
	case <-e.done:
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.status, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
