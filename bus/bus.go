// Package bus defines the message bus every kiln component talks over: the
// kernel's nervous system. It is modelled on NATS: subjects are dot-separated
// tokens, subscriptions may use the wildcards "*" (exactly one token) and ">"
// (one or more trailing tokens, last only), queue groups share a subject's
// messages among their members, and request/reply goes through inboxes.
//
// The bus is dial tone: fire and forget. Publishing never blocks on a slow
// subscriber; a subscriber that falls behind loses messages, which are counted
// in its statistics. Implementations live in bus/membus (in-process, the fake
// and the single-process default) and bus/natsbus (a NATS connection, with an
// embedded server helper). bus/bustest holds the conformance suite both pass.
package bus

import (
	"context"
	"encoding/json"
	"fmt"
)

// Msg is one message delivered to a subscriber.
type Msg struct {
	// Subject is the literal subject the message was published on.
	Subject string
	// Reply is the subject a responder should publish its answer to, or "".
	Reply string
	// Data is the payload. Handlers must not retain or modify it after they
	// return unless they copy it first.
	Data []byte
}

// Handler receives messages of a subscription. Calls for one subscription are
// made from a single goroutine, in publish order; a handler that blocks holds
// up only its own subscription (whose pending queue then fills and drops).
type Handler func(m *Msg)

// Subscription is an active interest in a subject.
type Subscription interface {
	// Subject returns the subject (possibly with wildcards) subscribed to.
	Subject() string
	// Queue returns the queue group name, or "" for a plain subscription.
	Queue() string
	// Unsubscribe stops delivery. Messages already queued may still be
	// delivered while it returns; none are delivered after it returns.
	// Unsubscribing twice returns ErrBadSubscription.
	Unsubscribe() error
	// Dropped reports how many messages this subscription lost because its
	// pending queue was full.
	Dropped() uint64
}

// Bus is a connection to the message bus. Every method is safe for
// concurrent use. After Close every method returns ErrClosed.
type Bus interface {
	// Publish sends data on a literal subject (no wildcards). It does not
	// wait for subscribers and does not block on slow ones.
	Publish(subject string, data []byte) error
	// PublishRequest publishes with a reply subject set.
	PublishRequest(subject, reply string, data []byte) error
	// Subscribe registers h for every message matching subject.
	Subscribe(subject string, h Handler) (Subscription, error)
	// QueueSubscribe registers h as a member of queue group queue: each
	// message matching subject goes to exactly one member of each group.
	QueueSubscribe(subject, queue string, h Handler) (Subscription, error)
	// Request publishes data with a fresh inbox as the reply subject and
	// returns the first reply. It returns ErrNoResponders at once when
	// nobody is subscribed to subject, and ctx.Err() when ctx ends first.
	Request(ctx context.Context, subject string, data []byte) (*Msg, error)
	// NewInbox returns a unique subject suitable for replies.
	NewInbox() string
	// Flush returns once every message published before it has been handed
	// to the bus (for a remote bus, acknowledged by the server).
	Flush(ctx context.Context) error
	// Stats reports counters of this connection.
	Stats() Stats
	// Drain stops accepting new messages on every subscription, delivers
	// what is pending (bounded by ctx), then closes the connection.
	Drain(ctx context.Context) error
	// Close closes the connection at once; pending messages are discarded.
	// Closing twice is not an error.
	Close() error
}

// Stats are a connection's counters since it was opened.
type Stats struct {
	InMsgs, OutMsgs   uint64 // messages delivered to handlers / published
	InBytes, OutBytes uint64 // payload bytes delivered / published
	Dropped           uint64 // messages lost by slow subscribers
	Reconnects        uint64 // successful reconnects (remote buses only)
	Subscriptions     int    // active subscriptions
	Connected         bool   // whether the bus is currently reachable
}

// PublishJSON encodes v as JSON and publishes it on subject.
func PublishJSON(b Bus, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bus: encode %s: %w", subject, err)
	}
	return b.Publish(subject, data)
}

// RespondJSON encodes v as JSON and publishes it to m's reply subject. It
// returns ErrNoReply when m has no reply subject.
func RespondJSON(b Bus, m *Msg, v any) error {
	if m.Reply == "" {
		return ErrNoReply
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("bus: encode reply to %s: %w", m.Subject, err)
	}
	return b.Publish(m.Reply, data)
}

// RequestJSON sends req as JSON and decodes the first reply into resp.
func RequestJSON(ctx context.Context, b Bus, subject string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("bus: encode %s: %w", subject, err)
	}
	m, err := b.Request(ctx, subject, data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("bus: decode reply to %s: %w", subject, err)
	}
	return nil
}

// ConnectionNotifier is implemented by buses that can tell when they lose
// and regain their connection (membus and natsbus both do). Components that
// must behave differently while the bus is down, such as the router, which
// stops pruning routes, find it with a type assertion on a Bus.
type ConnectionNotifier interface {
	// OnConnectionChange registers f to be called with false when the bus
	// goes down and true when it is back, in order, from one goroutine.
	// The returned function removes f.
	OnConnectionChange(f func(up bool)) (remove func())
}
