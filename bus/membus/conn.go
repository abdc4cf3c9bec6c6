package membus

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kiln-paas/kiln/bus"
)

// inboxRoot starts every inbox subject, as in NATS.
const inboxRoot = "_INBOX."

// Conn is one connection to a Server. It implements bus.Bus; see there for
// the contract of each method. Closing a Conn removes only its own
// subscriptions.
type Conn struct {
	srv        *Server
	inboxBase  string // "_INBOX.<random>." for NewInbox
	replyBase  string // "_INBOX.<random>." for Request, all under one subscription
	nextInbox  atomic.Uint64
	nextReply  atomic.Uint64
	closedCh   chan struct{}
	closed     atomic.Bool
	inMsgs     atomic.Uint64
	inBytes    atomic.Uint64
	outMsgs    atomic.Uint64
	outBytes   atomic.Uint64
	dropped    atomic.Uint64
	reconnects atomic.Uint64

	mu       sync.Mutex
	subs     map[*subscription]struct{} // user subscriptions, counted in Stats
	replies  *subscription              // created by the first Request, not counted
	waiting  map[string]chan *bus.Msg   // reply token -> the Request waiting for it
	hooks    []hook
	nextHook uint64
}

// hook is a function registered with OnConnectionChange.
type hook struct {
	id uint64
	f  func(up bool)
}

var _ bus.Bus = (*Conn)(nil)

func newConn(s *Server) *Conn {
	return &Conn{
		srv: s,
		// crypto/rand.Text is 26 base32 characters: unique without
		// coordination between servers, and a valid subject token.
		inboxBase: inboxRoot + crand.Text() + ".",
		replyBase: inboxRoot + crand.Text() + ".",
		closedCh:  make(chan struct{}),
		subs:      make(map[*subscription]struct{}),
		waiting:   make(map[string]chan *bus.Msg),
	}
}

// Publish implements bus.Bus.
func (c *Conn) Publish(subject string, data []byte) error {
	if _, err := c.publish(subject, "", data); err != nil {
		return wrap("publish", err)
	}
	return nil
}

// PublishRequest implements bus.Bus.
func (c *Conn) PublishRequest(subject, reply string, data []byte) error {
	if _, err := c.publish(subject, reply, data); err != nil {
		return wrap("publish", err)
	}
	return nil
}

// wrap adds the operation to an error, except to ErrClosed, which every
// operation on a closed connection returns as is.
func wrap(op string, err error) error {
	if err == bus.ErrClosed {
		return err
	}
	return fmt.Errorf("membus: %s: %w", op, err)
}

// publish offers the message to every matching subscription and returns how
// many matched (whether or not their queues had room).
func (c *Conn) publish(subject, reply string, data []byte) (int, error) {
	if c.closed.Load() {
		return 0, bus.ErrClosed
	}
	if err := bus.ValidateLiteral(subject); err != nil {
		return 0, err
	}
	if reply != "" {
		if err := bus.ValidateLiteral(reply); err != nil {
			return 0, fmt.Errorf("reply subject: %w", err)
		}
	}
	c.outMsgs.Add(1)
	c.outBytes.Add(uint64(len(data)))
	if !c.srv.up.Load() {
		return 0, nil
	}
	res := c.srv.subs.match(subject)
	if res.empty() {
		return 0, nil
	}
	// One copy per publish, shared read-only by every subscriber: the
	// publisher may reuse data as soon as Publish returns.
	m := message{subject: subject, reply: reply, data: bytes.Clone(data)}
	matched := 0
	for _, s := range res.plain {
		if s.offer(m, true) != removed {
			matched++
		}
	}
	for _, members := range res.groups {
		if offerToGroup(members, m) {
			matched++
		}
	}
	return matched, nil
}

// offerToGroup gives m to one member, chosen at random so that members
// share the load; a member with a full queue is passed over for the next
// one, and only when every member is full is the message dropped (and
// counted by the first member chosen). It reports whether any member was
// still subscribed.
func offerToGroup(members []*subscription, m message) bool {
	start := 0
	if len(members) > 1 {
		start = rand.IntN(len(members))
	}
	var first *subscription
	for i := range members {
		s := members[(start+i)%len(members)]
		switch s.offer(m, false) {
		case queued:
			return true
		case full:
			if first == nil {
				first = s
			}
		}
	}
	if first == nil {
		return false
	}
	first.offer(m, true) // counts the drop, or queues if room appeared
	return true
}

// Subscribe implements bus.Bus.
func (c *Conn) Subscribe(subject string, h bus.Handler) (bus.Subscription, error) {
	s, err := c.subscribe(subject, "", h)
	if err != nil {
		return nil, err // a nil *subscription must not become a non-nil interface
	}
	return s, nil
}

// QueueSubscribe implements bus.Bus.
func (c *Conn) QueueSubscribe(subject, queue string, h bus.Handler) (bus.Subscription, error) {
	if err := bus.ValidateQueue(queue); err != nil {
		return nil, fmt.Errorf("membus: subscribe %s: %w", subject, err)
	}
	s, err := c.subscribe(subject, queue, h)
	if err != nil {
		return nil, err // a nil *subscription must not become a non-nil interface
	}
	return s, nil
}

func (c *Conn) subscribe(subject, queue string, h bus.Handler) (*subscription, error) {
	if err := bus.ValidateSubject(subject); err != nil {
		return nil, fmt.Errorf("membus: subscribe: %w", err)
	}
	if h == nil {
		return nil, fmt.Errorf("membus: subscribe %s: %w", subject, bus.ErrNilHandler)
	}
	s := newSubscription(c, subject, queue, h, c.srv.cfg.PendingLimit)
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, bus.ErrClosed
	}
	c.subs[s] = struct{}{}
	// Inserted under c.mu so that a concurrent Close, which removes what
	// it finds in c.subs from the trie, cannot leave s behind in it.
	c.srv.subs.insert(s)
	c.mu.Unlock()
	go s.run()
	return s, nil
}

// forget removes s from the connection; false if it was not there (already
// unsubscribed, or the connection is closed).
func (c *Conn) forget(s *subscription) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[s]; !ok {
		return false
	}
	delete(c.subs, s)
	return true
}

// Request implements bus.Bus. Replies for all of a connection's requests
// arrive on one wildcard subscription, created on first use, so a request
// does not change the subscription trie (which would invalidate its cache).
func (c *Conn) Request(ctx context.Context, subject string, data []byte) (*bus.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := bus.ValidateLiteral(subject); err != nil {
		return nil, wrap("request", err)
	}
	token := strconv.FormatUint(c.nextReply.Add(1), 36)
	ch := make(chan *bus.Msg, 1)
	if err := c.await(token, ch); err != nil {
		return nil, err
	}
	defer func() {
		c.mu.Lock()
		delete(c.waiting, token)
		c.mu.Unlock()
	}()
	n, err := c.publish(subject, c.replyBase+token, data)
	if err != nil {
		return nil, wrap("request", err)
	}
	if n == 0 && c.srv.up.Load() {
		return nil, fmt.Errorf("membus: request %s: %w", subject, bus.ErrNoResponders)
	}
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closedCh:
		return nil, bus.ErrClosed
	}
}

// await registers ch for the reply token, creating the reply subscription
// if needed.
func (c *Conn) await(token string, ch chan *bus.Msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return bus.ErrClosed
	}
	if c.replies == nil {
		c.replies = newSubscription(c, c.replyBase+"*", "", c.deliverReply, c.srv.cfg.PendingLimit)
		c.srv.subs.insert(c.replies)
		go c.replies.run()
	}
	c.waiting[token] = ch
	return nil
}

// deliverReply hands a reply to the Request waiting for it. Later replies to
// the same request, and replies to finished requests, are discarded.
func (c *Conn) deliverReply(m *bus.Msg) {
	token := m.Subject[len(c.replyBase):]
	c.mu.Lock()
	ch := c.waiting[token]
	c.mu.Unlock()
	if ch == nil {
		return
	}
	reply := &bus.Msg{Subject: m.Subject, Reply: m.Reply, Data: bytes.Clone(m.Data)}
	select {
	case ch <- reply:
	default:
	}
}

// NewInbox implements bus.Bus.
func (c *Conn) NewInbox() string {
	return c.inboxBase + strconv.FormatUint(c.nextInbox.Add(1), 36)
}

// Flush implements bus.Bus. Publishing hands a message to its subscribers'
// queues before it returns, so there is nothing to wait for while the bus is
// up; while it is down (see Server.SetConnected) Flush waits for it to come
// back, as a NATS client's flush waits for its server.
func (c *Conn) Flush(ctx context.Context) error {
	if c.closed.Load() {
		return bus.ErrClosed
	}
	if c.srv.up.Load() {
		return nil
	}
	up := make(chan struct{})
	var once sync.Once
	remove := c.OnConnectionChange(func(isUp bool) {
		if isUp {
			once.Do(func() { close(up) })
		}
	})
	defer remove()
	if c.srv.up.Load() { // came back before the hook was in place
		return nil
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("membus: flush while disconnected: %w", ctx.Err())
	case <-c.closedCh:
		return bus.ErrClosed
	}
}

// OnConnectionChange registers f to be called with false when the bus goes
// down and with true when it comes back (see Server.SetConnected). Calls are
// made on the goroutine of SetConnected, in registration order, and must not
// block for long; they are not made on Close. The returned function removes
// the hook; calling it again does nothing.
func (c *Conn) OnConnectionChange(f func(up bool)) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextHook++
	id := c.nextHook
	c.hooks = append(c.hooks, hook{id: id, f: f})
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.hooks = slices.DeleteFunc(c.hooks, func(h hook) bool { return h.id == id })
	}
}

func (c *Conn) connectionChanged(up bool) {
	if c.closed.Load() {
		return
	}
	if up {
		c.reconnects.Add(1)
	}
	c.mu.Lock()
	hooks := slices.Clone(c.hooks)
	c.mu.Unlock()
	for _, h := range hooks {
		h.f(up)
	}
}

// Stats implements bus.Bus.
func (c *Conn) Stats() bus.Stats {
	c.mu.Lock()
	n := len(c.subs)
	c.mu.Unlock()
	return bus.Stats{
		InMsgs:        c.inMsgs.Load(),
		OutMsgs:       c.outMsgs.Load(),
		InBytes:       c.inBytes.Load(),
		OutBytes:      c.outBytes.Load(),
		Dropped:       c.dropped.Load(),
		Reconnects:    c.reconnects.Load(),
		Subscriptions: n,
		Connected:     !c.closed.Load() && c.srv.up.Load(),
	}
}

// Drain implements bus.Bus. It waits for every handler to finish its pending
// messages, so calling it from a handler of the same connection waits until
// ctx ends. When ctx ends first, the connection is closed anyway and the
// context's error returned.
func (c *Conn) Drain(ctx context.Context) error {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return bus.ErrClosed
	}
	subs := make([]*subscription, 0, len(c.subs))
	for s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	for _, s := range subs {
		c.srv.subs.remove(s)
		s.startDrain()
	}
	var err error
	for _, s := range subs {
		if err = s.waitDone(ctx); err != nil {
			err = fmt.Errorf("membus: drain: %w", err)
			break
		}
	}
	if cerr := c.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// Close implements bus.Bus. It does not wait for handlers that are running.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed.Swap(true) {
		c.mu.Unlock()
		return nil
	}
	subs := make([]*subscription, 0, len(c.subs)+1)
	for s := range c.subs {
		subs = append(subs, s)
	}
	if c.replies != nil {
		subs = append(subs, c.replies)
	}
	clear(c.subs)
	c.hooks = nil
	c.mu.Unlock()
	close(c.closedCh)
	for _, s := range subs {
		c.srv.subs.remove(s)
		s.shutdown()
	}
	c.srv.forget(c)
	return nil
}

// markClosed closes a connection that was never registered.
func (c *Conn) markClosed() {
	c.closed.Store(true)
	close(c.closedCh)
}
