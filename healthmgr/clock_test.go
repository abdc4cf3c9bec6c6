package healthmgr

import (
	"sync"
	"time"
)

// fakeClock is a Clock moved by hand. Timers and tickers fire (without
// blocking, like the time package's) when Advance passes their deadline;
// a timer of zero or negative duration fires at once.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk    *fakeClock
	c      chan time.Time
	at     time.Time
	period time.Duration // 0 for a one-shot timer
	done   bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("fakeClock: non-positive ticker period")
	}
	return fakeTicker{c.add(d, d)}
}

func (c *fakeClock) NewTimer(d time.Duration) Timer { return c.add(d, 0) }

func (c *fakeClock) add(d, period time.Duration) *fakeTimer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clk: c, c: make(chan time.Time, 1), at: c.now.Add(d), period: period}
	if d <= 0 {
		t.c <- c.now
		t.done = true
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock by d and fires what fell due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	live := c.timers[:0]
	for _, t := range c.timers {
		if t.done {
			continue
		}
		if !t.at.After(c.now) {
			select {
			case t.c <- c.now:
			default:
			}
			if t.period == 0 {
				t.done = true
				continue
			}
			for !t.at.After(c.now) {
				t.at = t.at.Add(t.period)
			}
		}
		live = append(live, t)
	}
	c.timers = live
}

// timersDue returns how many one-shot timers are armed to fire at now+d.
func (c *fakeClock) timersDue(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.done && t.period == 0 && t.at.Equal(c.now.Add(d)) {
			n++
		}
	}
	return n
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	was := !t.done
	t.done = true
	return was
}

// fakeTicker adapts a periodic fakeTimer to Ticker.
type fakeTicker struct{ t *fakeTimer }

func (k fakeTicker) C() <-chan time.Time { return k.t.c }
func (k fakeTicker) Stop()               { k.t.Stop() }

var (
	_ Clock = (*fakeClock)(nil)
	_ Timer = (*fakeTimer)(nil)
)
