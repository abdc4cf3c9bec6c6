package natsbus

import (
	"fmt"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/kiln-paas/kiln/bus"
)

// Subscribe implements bus.Bus.
func (c *Conn) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	return c.subscribe(subject, "", h)
}

// QueueSubscribe implements bus.Bus.
func (c *Conn) QueueSubscribe(subject, queue string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidateQueue(queue); err != nil {
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", subject, err)
	}
	return c.subscribe(subject, queue, h)
}

func (c *Conn) subscribe(subject, queue string, h bus.Handler) (bus.Subscription, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", subject, bus.ErrClosed)
	}
	if err := bus.ValidateSubject(subject); err != nil {
		return nil, fmt.Errorf("natsbus: subscribe: %w", err)
	}
	if h == nil {
		return nil, fmt.Errorf("natsbus: subscribe %s: %w", subject, bus.ErrNilHandler)
	}
	s := &subscription{conn: c, subject: subject, queue: queue}
	// nats.go calls cb from one goroutine per subscription, in order,
	// which is what bus.Handler promises.
	cb := func(m *nats.Msg) {
		if s.done.Load() {
			return
		}
		s.msgs.Add(1)
		s.bytes.Add(uint64(len(m.Data)))
		h(&bus.Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data})
	}
	var (
		ns  *nats.Subscription
		err error
	)
	if queue == "" {
		ns, err = c.nc.Subscribe(subject, cb)
	} else {
		ns, err = c.nc.QueueSubscribe(subject, queue, cb)
	}
	if err != nil {
		return nil, mapErr("subscribe", subject, err)
	}
	if err := ns.SetPendingLimits(c.cfg.PendingLimits.Msgs, c.cfg.PendingLimits.Bytes); err != nil {
		_ = ns.Unsubscribe()
		return nil, mapErr("subscribe", subject, err)
	}
	s.ns = ns
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s, nil
}

// subscription is a bus.Subscription over a NATS subscription.
type subscription struct {
	conn           *Conn
	ns             *nats.Subscription
	subject, queue string

	done        atomic.Bool   // Unsubscribe was called
	msgs, bytes atomic.Uint64 // delivered to the handler
	dropped     atomic.Uint64 // last count read from NATS
}

// Subject implements bus.Subscription.
func (s *subscription) Subject() string { return s.subject }

// Queue implements bus.Subscription.
func (s *subscription) Queue() string { return s.queue }

// Unsubscribe implements bus.Subscription. Once it returns no handler call
// starts; a call already running may still be finishing.
func (s *subscription) Unsubscribe() error {
	if !s.done.CompareAndSwap(false, true) {
		return fmt.Errorf("natsbus: unsubscribe %s: %w", s.subject, bus.ErrBadSubscription)
	}
	s.readDropped()
	err := s.ns.Unsubscribe()
	c := s.conn
	c.mu.Lock()
	delete(c.subs, s)
	c.retired.add(s.counts())
	c.mu.Unlock()
	if err != nil {
		if c.closed.Load() || c.nc.IsClosed() {
			// A subscription of a closed bus is invalid, and the bus
			// is closed: callers may test for either.
			return fmt.Errorf("natsbus: unsubscribe %s: %w: %w", s.subject, bus.ErrBadSubscription, bus.ErrClosed)
		}
		return mapErr("unsubscribe", s.subject, err)
	}
	return nil
}

// Dropped implements bus.Subscription.
func (s *subscription) Dropped() uint64 {
	if !s.done.Load() {
		s.readDropped()
	}
	return s.dropped.Load()
}

// readDropped refreshes the drop count from NATS, which only knows it
// while the subscription is open.
func (s *subscription) readDropped() {
	if n, err := s.ns.Dropped(); err == nil && n >= 0 {
		s.dropped.Store(uint64(n))
	}
}

func (s *subscription) counts() subCounts {
	if !s.done.Load() {
		s.readDropped()
	}
	return subCounts{msgs: s.msgs.Load(), bytes: s.bytes.Load(), dropped: s.dropped.Load()}
}
