package membus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/kiln-paas/kiln/bus"
)

// keepBatchCap is the largest queue buffer a subscription keeps after a
// burst: 4096 messages is 224 KiB of slice, while the buffer of a full
// default queue would pin 3.5 MiB per subscription for good.
const keepBatchCap = 4096

// message is one published message as queued for a subscription. Data is
// the publisher's bytes copied once per publish and shared, read-only, by
// every subscription it is queued for.
type message struct {
	subject, reply string
	data           []byte
}

// enqueueResult says what happened to a message offered to a subscription.
type enqueueResult int

const (
	queued  enqueueResult = iota
	full                  // pending limit reached: the message is lost
	removed               // unsubscribed or draining: not offered
)

// subscription is a bus.Subscription with its own pending queue and
// delivery goroutine, which calls the handler for each message in turn.
type subscription struct {
	conn    *Conn
	subject string
	queue   string
	handler bus.Handler
	limit   int

	mu       sync.Mutex
	items    []message // pending, oldest first
	inflight int       // size of the batch the delivery goroutine is working through
	draining bool      // accepts nothing more; goroutine exits when empty
	slow     bool      // dropping since the last successful enqueue

	wake    chan struct{} // capacity 1: the queue became non-empty
	stop    chan struct{} // closed by Unsubscribe or Close
	done    chan struct{} // closed when the delivery goroutine exits
	closed  atomic.Bool
	dropped atomic.Uint64
}

var _ bus.Subscription = (*subscription)(nil)

func newSubscription(c *Conn, subject, queue string, h bus.Handler, limit int) *subscription {
	return &subscription{
		conn:    c,
		subject: subject,
		queue:   queue,
		handler: h,
		limit:   limit,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// Subject implements bus.Subscription.
func (s *subscription) Subject() string { return s.subject }

// Queue implements bus.Subscription.
func (s *subscription) Queue() string { return s.queue }

// Dropped implements bus.Subscription.
func (s *subscription) Dropped() uint64 { return s.dropped.Load() }

// Unsubscribe implements bus.Subscription.
func (s *subscription) Unsubscribe() error {
	if !s.conn.forget(s) {
		return fmt.Errorf("membus: unsubscribe %s: %w", s.subject, bus.ErrBadSubscription)
	}
	s.conn.srv.subs.remove(s)
	s.shutdown()
	return nil
}

// shutdown stops delivery. The handler call in progress, if any, finishes;
// no further call starts.
func (s *subscription) shutdown() {
	if s.closed.Swap(true) {
		return
	}
	s.mu.Lock()
	clear(s.items)
	s.items = nil
	s.mu.Unlock()
	close(s.stop)
}

// offer queues m without ever blocking. When the queue is full, m is
// counted as dropped if drop is set, and left to the caller otherwise.
func (s *subscription) offer(m message, drop bool) enqueueResult {
	s.mu.Lock()
	if s.draining || s.closed.Load() {
		s.mu.Unlock()
		return removed
	}
	if len(s.items)+s.inflight >= s.limit {
		if !drop {
			s.mu.Unlock()
			return full
		}
		first := !s.slow
		s.slow = true
		s.mu.Unlock()
		s.drop(first)
		return full
	}
	s.slow = false
	s.items = append(s.items, m)
	wasEmpty := len(s.items) == 1
	s.mu.Unlock()
	// The delivery goroutine only sleeps after finding the queue empty, so
	// only the enqueue that makes it non-empty needs to wake it.
	if wasEmpty {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return queued
}

// drop counts a lost message and reports the start of a slow-consumer
// episode (the first drop since the queue last had room).
func (s *subscription) drop(first bool) {
	s.dropped.Add(1)
	s.conn.dropped.Add(1)
	if !first {
		return
	}
	srv := s.conn.srv
	srv.log.Warn("slow-consumer",
		"subject", s.subject, "queue", s.queue,
		"pending-limit", s.limit, "dropped", s.dropped.Load())
	if srv.cfg.OnSlowConsumer != nil {
		srv.cfg.OnSlowConsumer(s)
	}
}

// run is the delivery goroutine: it takes the whole pending queue at once
// and hands the messages to the handler in order.
func (s *subscription) run() {
	defer close(s.done)
	var batch []message
	for {
		s.mu.Lock()
		// Swap buffers so the publishers append to one slice while this
		// goroutine works through the other.
		batch, s.items = s.items, batch[:0]
		s.inflight = len(batch)
		draining := s.draining
		s.mu.Unlock()
		if len(batch) == 0 {
			if draining {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		for i := range batch {
			if s.closed.Load() {
				return
			}
			m := &batch[i]
			s.conn.inMsgs.Add(1)
			s.conn.inBytes.Add(uint64(len(m.data)))
			s.handler(&bus.Msg{Subject: m.subject, Reply: m.reply, Data: m.data})
		}
		clear(batch) // let the payloads be collected
		if cap(batch) > keepBatchCap {
			batch = nil // give back the memory of a burst
		}
	}
}

// startDrain makes the subscription refuse new messages and its goroutine
// exit once the pending ones are handled.
func (s *subscription) startDrain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// waitDone waits for the delivery goroutine to exit.
func (s *subscription) waitDone(ctx context.Context) error {
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
