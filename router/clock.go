package router

import "time"

// Clock is the router's source of time for pruning and periodic messages,
// so tests can move time by hand. The proxy path stamps requests with the
// wall clock directly.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTicker returns a Ticker that ticks every d until stopped.
	NewTicker(d time.Duration) Ticker
}

// Ticker delivers ticks on C until stopped.
type Ticker interface {
	// C returns the channel ticks are delivered on.
	C() <-chan time.Time
	// Stop ends the ticks; C is not closed.
	Stop()
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTicker(d time.Duration) Ticker { return sysTicker{time.NewTicker(d)} }

type sysTicker struct{ t *time.Ticker }

func (t sysTicker) C() <-chan time.Time { return t.t.C }
func (t sysTicker) Stop()               { t.t.Stop() }
