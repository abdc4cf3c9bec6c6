// Package bustest is the conformance suite every bus.Bus implementation
// passes, in the spirit of testing/fstest: an implementation's own test calls
// Run with a function that opens two connections to one fresh bus, and the
// suite checks subject matching, queue groups, request/reply, ordering,
// slow-subscriber isolation, validation, Flush, Drain and Close as subtests.
//
// The suite only relies on the contract written in package bus. Delivery is
// asynchronous everywhere, so every check waits for an outcome with a
// deadline; only the absence of a message is asserted after a short bounded
// wait. Subscriptions are followed by Flush on the subscribing connection
// before another connection publishes, because a remote bus registers
// interest asynchronously.
//
// An implementation runs the suite from its own tests:
//
//	func TestConformance(t *testing.T) {
//		bustest.Run(t, func(t *testing.T) (a, b bus.Bus) {
//			srv := membus.NewServer(membus.DefaultConfig())
//			t.Cleanup(srv.Close)
//			return srv.Connect(), srv.Connect()
//		})
//	}
//
// Subtests run one after another, each on a fresh bus.
package bustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-paas/kiln/bus"
)

// Connect opens two connections to the same fresh bus. The suite calls it at
// the start of every subtest with that subtest's t; the implementation closes
// both connections (and any server) with t.Cleanup. The suite may close them
// earlier itself, so closing must be idempotent.
type Connect func(t *testing.T) (a, b bus.Bus)

const (
	// waitTimeout bounds every wait for an expected outcome. It is generous
	// because CI machines run the race detector on few, shared cores; a
	// correct implementation finishes far sooner.
	waitTimeout = 10 * time.Second
	// quietPeriod is how long the suite watches for a message that must not
	// arrive. A wrongly delivered message normally shows up within
	// microseconds, so a short wait catches real bugs without slowing the
	// suite.
	quietPeriod = 50 * time.Millisecond
)

// Run runs the conformance suite against the bus connect opens.
func Run(t *testing.T, connect func(t *testing.T) (a, b bus.Bus)) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, connect Connect)
	}{
		{"LiteralMatch", testLiteralMatch},
		{"WildcardMatch", testWildcardMatch},
		{"MessageFields", testMessageFields},
		{"PublisherMayReuseBuffer", testBufferReuse},
		{"QueueGroupExactlyOnce", testQueueExactlyOnce},
		{"QueueGroupSpread", testQueueSpread},
		{"QueueAndPlain", testQueueAndPlain},
		{"RequestReply", testRequestReply},
		{"RequestFirstReplyWins", testFirstReplyWins},
		{"RequestTimeout", testRequestTimeout},
		{"RequestNoResponders", testNoResponders},
		{"Inbox", testInbox},
		{"Unsubscribe", testUnsubscribe},
		{"OrderPerSubscriber", testOrder},
		{"StuckSubscriber", testStuckSubscriber},
		{"ConcurrentPublishers", testConcurrentPublishers},
		{"InvalidSubjects", testInvalidSubjects},
		{"InvalidQueues", testInvalidQueues},
		{"NilHandler", testNilHandler},
		{"CrossConnection", testCrossConnection},
		{"Flush", testFlush},
		{"Stats", testStats},
		{"Drain", testDrain},
		{"DrainDeadline", testDrainDeadline},
		{"UseAfterClose", testUseAfterClose},
		{"CloseLeavesOtherConnection", testCloseLeavesOther},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, connect) })
	}
}

// recorder collects the messages one handler receives, copying them because
// handlers must not retain Msg.Data.
type recorder struct {
	mu   sync.Mutex
	msgs []bus.Msg
}

func (r *recorder) handle(m *bus.Msg) {
	c := bus.Msg{Subject: m.Subject, Reply: m.Reply, Data: bytes.Clone(m.Data)}
	r.mu.Lock()
	r.msgs = append(r.msgs, c)
	r.mu.Unlock()
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) all() []bus.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *recorder) data() []string {
	msgs := r.all()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Data)
	}
	return out
}

func (r *recorder) subjects() []string {
	msgs := r.all()
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Subject
	}
	return out
}

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitCount waits until r has received n messages.
func waitCount(t *testing.T, r *recorder, n int, what string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages on %s (have %d)", n, what, r.len()), func() bool { return r.len() >= n })
}

// quiet waits quietPeriod so that a message which must not arrive has the
// chance to; callers then assert on what was received.
func quiet() { time.Sleep(quietPeriod) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func flush(t *testing.T, bs ...bus.Bus) {
	t.Helper()
	for _, b := range bs {
		if err := b.Flush(ctxT(t)); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
}

func subscribe(t *testing.T, b bus.Bus, subject string, h bus.Handler) bus.Subscription {
	t.Helper()
	s, err := b.Subscribe(subject, h)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", subject, err)
	}
	return s
}

func queueSubscribe(t *testing.T, b bus.Bus, subject, queue string, h bus.Handler) bus.Subscription {
	t.Helper()
	s, err := b.QueueSubscribe(subject, queue, h)
	if err != nil {
		t.Fatalf("QueueSubscribe(%q, %q): %v", subject, queue, err)
	}
	return s
}

func publish(t *testing.T, b bus.Bus, subject string, data string) {
	t.Helper()
	if err := b.Publish(subject, []byte(data)); err != nil {
		t.Fatalf("Publish(%q): %v", subject, err)
	}
}

// numbered returns "0", "1", ... "n-1".
func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

func testLiteralMatch(t *testing.T, connect Connect) {
	a, b := connect(t)
	var exact, other recorder
	subscribe(t, b, "app.start", exact.handle)
	subscribe(t, b, "app.stop", other.handle)
	flush(t, b)
	for _, s := range []string{"app.start", "app", "app.start.now", "app.starts", "x.app.start", "app.start"} {
		publish(t, a, s, s)
	}
	flush(t, a)
	waitCount(t, &exact, 2, "app.start")
	quiet()
	if diff := cmp.Diff([]string{"app.start", "app.start"}, exact.subjects()); diff != "" {
		t.Errorf("app.start subscriber got (-want +got):\n%s", diff)
	}
	if n := other.len(); n != 0 {
		t.Errorf("app.stop subscriber got %d messages, want 0", n)
	}
}

func testWildcardMatch(t *testing.T, connect Connect) {
	a, b := connect(t)
	published := []string{"a", "a.b", "a.b.c", "a.x.c", "a.b.c.d", "b.b.c", "a.b.d"}
	want := map[string][]string{
		"a.b.c":   {"a.b.c"},
		"a.*.c":   {"a.b.c", "a.x.c"},
		"a.b.*":   {"a.b.c", "a.b.d"},
		"*.b.c":   {"a.b.c", "b.b.c"},
		"*.*.*":   {"a.b.c", "a.x.c", "b.b.c", "a.b.d"},
		"*":       {"a"},
		"a.>":     {"a.b", "a.b.c", "a.x.c", "a.b.c.d", "a.b.d"},
		"a.b.>":   {"a.b.c", "a.b.c.d", "a.b.d"},
		"a.*.>":   {"a.b.c", "a.x.c", "a.b.c.d", "a.b.d"},
		"*.b.>":   {"a.b.c", "a.b.c.d", "b.b.c", "a.b.d"},
		">":       published,
		"a.b.c.>": {"a.b.c.d"},
		"a.b.c.*": {"a.b.c.d"},
		"c.>":     nil,
	}
	recs := map[string]*recorder{}
	for pattern := range want {
		recs[pattern] = &recorder{}
		subscribe(t, b, pattern, recs[pattern].handle)
	}
	// A second, identical subscription is a separate interest: it gets its
	// own copy, and neither copy is merged with the first.
	var dup recorder
	subscribe(t, b, "a.*.c", dup.handle)
	flush(t, b)
	for _, s := range published {
		publish(t, a, s, s)
	}
	flush(t, a)
	for pattern, w := range want {
		waitCount(t, recs[pattern], len(w), pattern)
	}
	waitCount(t, &dup, 2, "duplicate a.*.c")
	quiet()
	for pattern, w := range want {
		if diff := cmp.Diff(w, recs[pattern].subjects(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("subscription %q got (-want +got):\n%s", pattern, diff)
		}
	}
	if diff := cmp.Diff(want["a.*.c"], dup.subjects()); diff != "" {
		t.Errorf("duplicate subscription a.*.c got (-want +got):\n%s", diff)
	}
}

func testMessageFields(t *testing.T, connect Connect) {
	a, b := connect(t)
	var rec recorder
	subscribe(t, b, "fields.*", rec.handle)
	flush(t, b)
	if err := a.PublishRequest("fields.one", "reply.here", []byte("payload")); err != nil {
		t.Fatalf("PublishRequest: %v", err)
	}
	if err := a.Publish("fields.two", nil); err != nil {
		t.Fatalf("Publish with nil data: %v", err)
	}
	flush(t, a)
	waitCount(t, &rec, 2, "fields.*")
	got := rec.all()
	want := []bus.Msg{
		{Subject: "fields.one", Reply: "reply.here", Data: []byte("payload")},
		{Subject: "fields.two"},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y []byte) bool { return bytes.Equal(x, y) })); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

func testBufferReuse(t *testing.T, connect Connect) {
	a, b := connect(t)
	var rec recorder
	subscribe(t, b, "reuse", rec.handle)
	flush(t, b)
	buf := []byte("first")
	if err := a.Publish("reuse", buf); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	copy(buf, "XXXXX")
	if err := a.Publish("reuse", []byte("second")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	flush(t, a)
	waitCount(t, &rec, 2, "reuse")
	if diff := cmp.Diff([]string{"first", "second"}, rec.data()); diff != "" {
		t.Errorf("publisher's later writes leaked into delivered data (-want +got):\n%s", diff)
	}
}

// queueTally records which member of a group received which message.
type queueTally struct {
	mu     sync.Mutex
	seen   map[string]int // message data -> deliveries within the group
	byName map[string]int // member name -> messages received
	total  int
}

func newQueueTally() *queueTally {
	return &queueTally{seen: map[string]int{}, byName: map[string]int{}}
}

func (q *queueTally) member(name string) bus.Handler {
	return func(m *bus.Msg) {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.seen[string(m.Data)]++
		q.byName[name]++
		q.total++
	}
}

func (q *queueTally) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}

func (q *queueTally) check(t *testing.T, group string, n int) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.total != n {
		t.Errorf("group %s received %d messages in total, want %d", group, q.total, n)
	}
	for i := range n {
		if c := q.seen[strconv.Itoa(i)]; c != 1 {
			t.Errorf("group %s received message %d %d times, want exactly once", group, i, c)
		}
	}
}

func testQueueExactlyOnce(t *testing.T, connect Connect) {
	a, b := connect(t)
	const n = 200
	g1, g2 := newQueueTally(), newQueueTally()
	// Members on both connections and with different (overlapping)
	// subjects still form one group per name.
	queueSubscribe(t, a, "work.>", "g1", g1.member("a1"))
	queueSubscribe(t, b, "work.item", "g1", g1.member("b1"))
	queueSubscribe(t, b, "work.*", "g1", g1.member("b2"))
	queueSubscribe(t, a, "work.item", "g2", g2.member("a1"))
	queueSubscribe(t, b, "work.item", "g2", g2.member("b1"))
	flush(t, a, b)
	for _, d := range numbered(n) {
		publish(t, a, "work.item", d)
	}
	flush(t, a)
	waitFor(t, "g1 to receive all messages", func() bool { return g1.count() >= n })
	waitFor(t, "g2 to receive all messages", func() bool { return g2.count() >= n })
	quiet()
	g1.check(t, "g1", n)
	g2.check(t, "g2", n)
}

func testQueueSpread(t *testing.T, connect Connect) {
	a, b := connect(t)
	const members, n = 3, 900
	g := newQueueTally()
	names := []string{"m0", "m1", "m2"}
	for i, name := range names {
		conn := a
		if i%2 == 1 {
			conn = b
		}
		queueSubscribe(t, conn, "spread", "workers", g.member(name))
	}
	flush(t, a, b)
	for _, d := range numbered(n) {
		publish(t, a, "spread", d)
	}
	flush(t, a)
	waitFor(t, "the group to receive all messages", func() bool { return g.count() >= n })
	g.check(t, "workers", n)
	// Random choice gives each member n/members = 300 ± ~15 (one standard
	// deviation); round-robin gives exactly 300. A third of the fair share
	// only fails an implementation that does not spread at all.
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, name := range names {
		if got := g.byName[name]; got < n/members/3 {
			t.Errorf("member %s received %d of %d messages, want at least %d (shares: %v)", name, got, n, n/members/3, g.byName)
		}
	}
}

func testQueueAndPlain(t *testing.T, connect Connect) {
	a, b := connect(t)
	const n = 100
	g := newQueueTally()
	queueSubscribe(t, b, "mixed", "q", g.member("b1"))
	queueSubscribe(t, b, "mixed", "q", g.member("b2"))
	var plain1, plain2 recorder
	subscribe(t, b, "mixed", plain1.handle)
	subscribe(t, a, "mixed", plain2.handle)
	flush(t, a, b)
	for _, d := range numbered(n) {
		publish(t, a, "mixed", d)
	}
	flush(t, a)
	waitCount(t, &plain1, n, "plain subscriber on b")
	waitCount(t, &plain2, n, "plain subscriber on a")
	waitFor(t, "the group to receive all messages", func() bool { return g.count() >= n })
	quiet()
	g.check(t, "q", n)
	if diff := cmp.Diff(numbered(n), plain1.data()); diff != "" {
		t.Errorf("plain subscriber on b (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(numbered(n), plain2.data()); diff != "" {
		t.Errorf("plain subscriber on a (-want +got):\n%s", diff)
	}
}

// echo subscribes a responder on b that answers prefix+request.
func echo(t *testing.T, b bus.Bus, subject, prefix string) {
	t.Helper()
	subscribe(t, b, subject, func(m *bus.Msg) {
		// The error is ignored: the requester may be gone already.
		_ = b.Publish(m.Reply, append([]byte(prefix), m.Data...))
	})
}

// wantReply makes a request of b and checks the reply; what names the
// request in failures.
func wantReply(t *testing.T, b bus.Bus, subject, data, want, what string) {
	t.Helper()
	m, err := b.Request(ctxT(t), subject, []byte(data))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if string(m.Data) != want {
		t.Errorf("%s: reply %q, want %q", what, m.Data, want)
	}
}

func testRequestReply(t *testing.T, connect Connect) {
	a, b := connect(t)
	echo(t, b, "svc.echo", "echo:")
	echo(t, b, "svc.wild.*", "wild:")
	flush(t, b)
	for i, tc := range []struct{ subject, data, want string }{
		{"svc.echo", "hello", "echo:hello"},
		{"svc.wild.x", "there", "wild:there"},
		{"svc.echo", "again", "echo:again"},
	} {
		wantReply(t, a, tc.subject, tc.data, tc.want, fmt.Sprintf("request %d to %s", i, tc.subject))
	}
	// A responder on the requesting connection works too.
	echo(t, a, "svc.local", "local:")
	flush(t, a)
	wantReply(t, a, "svc.local", "x", "local:x", "request to a local responder")
}

func testFirstReplyWins(t *testing.T, connect Connect) {
	a, b := connect(t)
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	var slowReplied sync.WaitGroup
	slowReplied.Add(1)
	subscribe(t, b, "race", func(m *bus.Msg) {
		_ = b.Publish(m.Reply, []byte("fast"))
	})
	subscribe(t, b, "race", func(m *bus.Msg) {
		<-release
		_ = b.Publish(m.Reply, []byte("slow"))
		_ = b.Flush(context.Background()) // make the late reply reach the bus
		slowReplied.Done()
	})
	flush(t, b)
	wantReply(t, a, "race", "go", "fast", "request answered twice")
	// The late reply to the finished request must not surface anywhere,
	// in particular not as the answer to a later request.
	close(release)
	slowReplied.Wait()
	echo(t, b, "after", "after:")
	flush(t, b)
	wantReply(t, a, "after", "1", "after:1", "second request")
}

func testRequestTimeout(t *testing.T, connect Connect) {
	a, b := connect(t)
	var rec recorder
	subscribe(t, b, "silent", rec.handle) // a responder that never answers
	flush(t, b)
	// Long enough that a loaded machine still sends the request before the
	// deadline (the subscriber must see it), short enough not to slow the
	// suite.
	ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
	defer cancel()
	start := time.Now()
	m, err := a.Request(ctx, "silent", []byte("anyone?"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request = %v, %v; want context.DeadlineExceeded", m, err)
	}
	if d := time.Since(start); d > waitTimeout/2 {
		t.Errorf("Request returned %v after its deadline", d)
	}
	waitCount(t, &rec, 1, "silent")

	// A context cancelled before the call ends the request too.
	ctx, cancel = context.WithCancel(t.Context())
	cancel()
	if _, err := a.Request(ctx, "silent", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Request with a cancelled context = %v, want context.Canceled", err)
	}
}

func testNoResponders(t *testing.T, connect Connect) {
	a, b := connect(t)
	var rec recorder
	subscribe(t, b, "other.subject", rec.handle)
	flush(t, b)
	start := time.Now()
	_, err := a.Request(ctxT(t), "nobody.home", []byte("hi"))
	if !errors.Is(err, bus.ErrNoResponders) {
		t.Fatalf("Request with no subscriber = %v, want ErrNoResponders", err)
	}
	if d := time.Since(start); d > waitTimeout/2 {
		t.Errorf("ErrNoResponders took %v; it must come at once, not at the deadline", d)
	}
	// After a responder unsubscribes there are no responders again.
	s := subscribe(t, b, "nobody.home", func(m *bus.Msg) { _ = b.Publish(m.Reply, []byte("yes")) })
	flush(t, b)
	if _, err := a.Request(ctxT(t), "nobody.home", nil); err != nil {
		t.Fatalf("Request with a responder: %v", err)
	}
	if err := s.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	flush(t, b)
	if _, err := a.Request(ctxT(t), "nobody.home", nil); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("Request after the responder left = %v, want ErrNoResponders", err)
	}
}

func testInbox(t *testing.T, connect Connect) {
	a, b := connect(t)
	seen := map[string]bool{}
	for range 100 {
		for _, c := range []bus.Bus{a, b} {
			in := c.NewInbox()
			if err := bus.ValidateLiteral(in); err != nil {
				t.Fatalf("NewInbox() = %q: %v", in, err)
			}
			if seen[in] {
				t.Fatalf("NewInbox() returned %q twice", in)
			}
			seen[in] = true
		}
	}
	// An inbox is an ordinary subject: hand-rolled request/reply works.
	inbox := a.NewInbox()
	var replies recorder
	subscribe(t, a, inbox, replies.handle)
	subscribe(t, b, "manual", func(m *bus.Msg) { _ = b.Publish(m.Reply, []byte("got "+string(m.Data))) })
	flush(t, a, b)
	if err := a.PublishRequest("manual", inbox, []byte("ping")); err != nil {
		t.Fatalf("PublishRequest: %v", err)
	}
	flush(t, a)
	waitCount(t, &replies, 1, "the inbox")
	if got := string(replies.all()[0].Data); got != "got ping" {
		t.Errorf("reply %q, want %q", got, "got ping")
	}
}

func testUnsubscribe(t *testing.T, connect Connect) {
	a, b := connect(t)
	var gone, stays recorder
	s := subscribe(t, b, "unsub.*", gone.handle)
	subscribe(t, b, "unsub.*", stays.handle)
	if s.Subject() != "unsub.*" || s.Queue() != "" {
		t.Errorf("Subject, Queue = %q, %q; want %q, %q", s.Subject(), s.Queue(), "unsub.*", "")
	}
	q := queueSubscribe(t, b, "unsub.q", "grp", gone.handle)
	if q.Subject() != "unsub.q" || q.Queue() != "grp" {
		t.Errorf("Subject, Queue = %q, %q; want %q, %q", q.Subject(), q.Queue(), "unsub.q", "grp")
	}
	flush(t, b)
	publish(t, a, "unsub.x", "before")
	flush(t, a)
	waitCount(t, &gone, 1, "the subscription before Unsubscribe")
	if err := s.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if err := q.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe queue: %v", err)
	}
	flush(t, b)
	publish(t, a, "unsub.x", "after")
	publish(t, a, "unsub.q", "after")
	flush(t, a)
	waitCount(t, &stays, 3, "the remaining subscription")
	quiet()
	if diff := cmp.Diff([]string{"before"}, gone.data()); diff != "" {
		t.Errorf("unsubscribed handlers got (-want +got):\n%s", diff)
	}
	if err := s.Unsubscribe(); !errors.Is(err, bus.ErrBadSubscription) {
		t.Errorf("second Unsubscribe = %v, want ErrBadSubscription", err)
	}
}

func testOrder(t *testing.T, connect Connect) {
	a, b := connect(t)
	const n = 2000
	var remote, local, wild recorder
	subscribe(t, b, "order", remote.handle)
	subscribe(t, a, "order", local.handle)
	subscribe(t, b, ">", wild.handle)
	flush(t, a, b)
	for _, d := range numbered(n) {
		publish(t, a, "order", d)
	}
	flush(t, a)
	waitCount(t, &remote, n, "order on b")
	waitCount(t, &local, n, "order on a")
	waitCount(t, &wild, n, "> on b")
	for name, r := range map[string]*recorder{"b": &remote, "a": &local, "wildcard": &wild} {
		if diff := cmp.Diff(numbered(n), r.data()); diff != "" {
			t.Errorf("subscriber %s saw messages out of order (-want +got):\n%s", name, diff)
		}
	}
}

func testStuckSubscriber(t *testing.T, connect Connect) {
	a, b := connect(t)
	// Enough messages to overflow a small bounded queue, few enough for a
	// remote bus with large client-side limits to buffer them all.
	const n = 20000
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var stuckGot recorder
	stuck := subscribe(t, b, "flood", func(m *bus.Msg) {
		<-release
		stuckGot.handle(m)
	})
	var sameConn, otherConn recorder
	subscribe(t, b, "flood", sameConn.handle)
	subscribe(t, a, "flood", otherConn.handle)
	flush(t, a, b)

	published := make(chan error, 1)
	go func() {
		payload := make([]byte, 64)
		for i := range n {
			if err := a.Publish("flood", payload); err != nil {
				published <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
		published <- nil
	}()
	select {
	case err := <-published:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("publisher blocked behind a stuck subscriber: %d messages not published within %v", n, waitTimeout)
	}
	flush(t, a)
	waitCount(t, &sameConn, n, "a subscriber sharing the stuck one's connection")
	waitCount(t, &otherConn, n, "a subscriber on another connection")

	// Every message either reaches the stuck handler once it is released
	// or is counted as dropped, never both, never neither.
	unblock()
	waitFor(t, "the stuck subscriber to account for every message", func() bool {
		return uint64(stuckGot.len())+stuck.Dropped() >= n
	})
	quiet()
	if got, dropped := stuckGot.len(), stuck.Dropped(); uint64(got)+dropped != n {
		t.Errorf("stuck subscriber: %d delivered + %d dropped, want %d", got, dropped, n)
	}
	if st := b.Stats(); st.Dropped < stuck.Dropped() {
		t.Errorf("Stats().Dropped = %d, less than the subscription's %d", st.Dropped, stuck.Dropped())
	}
}

func testConcurrentPublishers(t *testing.T, connect Connect) {
	a, b := connect(t)
	const publishers, each = 4, 250
	var rec recorder
	subscribe(t, b, "conc.*", rec.handle)
	flush(t, b)
	var wg sync.WaitGroup
	errs := make(chan error, publishers*2)
	for p := range publishers {
		conn := a
		if p%2 == 1 {
			conn = b
		}
		wg.Go(func() {
			for i := range each {
				if err := conn.Publish("conc."+strconv.Itoa(p), []byte(strconv.Itoa(i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	flush(t, a, b)
	waitCount(t, &rec, publishers*each, "conc.*")
	quiet()
	per := map[string][]string{}
	for _, m := range rec.all() {
		per[m.Subject] = append(per[m.Subject], string(m.Data))
	}
	for p := range publishers {
		subj := "conc." + strconv.Itoa(p)
		if diff := cmp.Diff(numbered(each), per[subj]); diff != "" {
			t.Errorf("publisher %d's messages (-want +got):\n%s", p, diff)
		}
	}
}

func testInvalidSubjects(t *testing.T, connect Connect) {
	a, _ := connect(t)
	nop := func(*bus.Msg) {}
	badSubscribe := []string{"", ".", "a.", ".a", "a..b", "a b", "a\tb", "a.>.b", ">.a", "a*", "a.b>", "a\nb"}
	for _, s := range badSubscribe {
		if sub, err := a.Subscribe(s, nop); !errors.Is(err, bus.ErrBadSubject) || sub != nil {
			t.Errorf("Subscribe(%q) = %v, %v; want nil, ErrBadSubject", s, sub, err)
		}
		if sub, err := a.QueueSubscribe(s, "q", nop); !errors.Is(err, bus.ErrBadSubject) || sub != nil {
			t.Errorf("QueueSubscribe(%q) = %v, %v; want nil, ErrBadSubject", s, sub, err)
		}
	}
	badPublish := []string{"", ".", "a.", ".a", "a..b", "a b", "a.*", "*", ">", "a.>", "a\r\nb"}
	for _, s := range badPublish {
		if err := a.Publish(s, nil); !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("Publish(%q) = %v, want ErrBadSubject", s, err)
		}
		if err := a.PublishRequest(s, "reply", nil); !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("PublishRequest(%q, reply) = %v, want ErrBadSubject", s, err)
		}
		if err := a.PublishRequest("ok", s, nil); s != "" && !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("PublishRequest(ok, %q) = %v, want ErrBadSubject", s, err)
		}
		if _, err := a.Request(ctxT(t), s, nil); !errors.Is(err, bus.ErrBadSubject) {
			t.Errorf("Request(%q) = %v, want ErrBadSubject", s, err)
		}
	}
	// Valid subjects of every shape are accepted.
	for _, s := range []string{"a", "a.b.c", "A-b_c.123", "*", ">", "a.*.c", "a.>", "*.*"} {
		sub, err := a.Subscribe(s, nop)
		if err != nil {
			t.Errorf("Subscribe(%q): %v", s, err)
			continue
		}
		if err := sub.Unsubscribe(); err != nil {
			t.Errorf("Unsubscribe(%q): %v", s, err)
		}
	}
}

func testInvalidQueues(t *testing.T, connect Connect) {
	a, _ := connect(t)
	for _, q := range []string{"", "a b", "q\t", "\n"} {
		if _, err := a.QueueSubscribe("ok", q, func(*bus.Msg) {}); !errors.Is(err, bus.ErrBadQueue) {
			t.Errorf("QueueSubscribe(ok, %q) = %v, want ErrBadQueue", q, err)
		}
	}
}

func testNilHandler(t *testing.T, connect Connect) {
	a, _ := connect(t)
	if sub, err := a.Subscribe("ok", nil); !errors.Is(err, bus.ErrNilHandler) || sub != nil {
		t.Errorf("Subscribe with nil handler = %v, %v; want nil, ErrNilHandler", sub, err)
	}
	if sub, err := a.QueueSubscribe("ok", "q", nil); !errors.Is(err, bus.ErrNilHandler) || sub != nil {
		t.Errorf("QueueSubscribe with nil handler = %v, %v; want nil, ErrNilHandler", sub, err)
	}
}

func testCrossConnection(t *testing.T, connect Connect) {
	a, b := connect(t)
	var onA, onB recorder
	subscribe(t, a, "cross.to-a", onA.handle)
	subscribe(t, b, "cross.to-b", onB.handle)
	flush(t, a, b)
	publish(t, a, "cross.to-b", "from a")
	publish(t, b, "cross.to-a", "from b")
	flush(t, a, b)
	waitCount(t, &onB, 1, "b")
	waitCount(t, &onA, 1, "a")
	quiet()
	if diff := cmp.Diff([]string{"from a"}, onB.data()); diff != "" {
		t.Errorf("b received (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"from b"}, onA.data()); diff != "" {
		t.Errorf("a received (-want +got):\n%s", diff)
	}
}

func testFlush(t *testing.T, connect Connect) {
	a, b := connect(t)
	var rec recorder
	subscribe(t, b, "flushed", rec.handle)
	flush(t, b)
	for _, d := range numbered(50) {
		publish(t, a, "flushed", d)
	}
	if err := a.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	waitCount(t, &rec, 50, "flushed")
	// Flush with nothing pending returns too.
	if err := b.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush with nothing published: %v", err)
	}
}

func testStats(t *testing.T, connect Connect) {
	a, b := connect(t)
	before := b.Stats()
	if !before.Connected || !a.Stats().Connected {
		t.Errorf("Connected = %v, %v on fresh connections, want true", a.Stats().Connected, before.Connected)
	}
	var rec recorder
	s1 := subscribe(t, b, "stats.*", rec.handle)
	subscribe(t, b, "stats.x", rec.handle)
	if got := b.Stats().Subscriptions; got != before.Subscriptions+2 {
		t.Errorf("Subscriptions = %d after two subscribes, want %d", got, before.Subscriptions+2)
	}
	flush(t, b)
	aBefore := a.Stats()
	for range 10 {
		publish(t, a, "stats.x", "12345")
	}
	flush(t, a)
	aAfter := a.Stats()
	if d := aAfter.OutMsgs - aBefore.OutMsgs; d != 10 {
		t.Errorf("OutMsgs grew by %d, want 10", d)
	}
	if d := aAfter.OutBytes - aBefore.OutBytes; d != 50 {
		t.Errorf("OutBytes grew by %d, want 50", d)
	}
	waitCount(t, &rec, 20, "stats subscriptions")
	waitFor(t, "InMsgs to count 20 deliveries", func() bool { return b.Stats().InMsgs-before.InMsgs >= 20 })
	if d := b.Stats().InBytes - before.InBytes; d < 100 {
		t.Errorf("InBytes grew by %d, want at least 100", d)
	}
	if err := s1.Unsubscribe(); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	if got := b.Stats().Subscriptions; got != before.Subscriptions+1 {
		t.Errorf("Subscriptions = %d after unsubscribing one, want %d", got, before.Subscriptions+1)
	}
}

func testDrain(t *testing.T, connect Connect) {
	_, b := connect(t)
	const n = 20
	gate := make(chan struct{})
	var gateOnce sync.Once
	t.Cleanup(func() { gateOnce.Do(func() { close(gate) }) })
	var slow, fast recorder
	subscribe(t, b, "drain", func(m *bus.Msg) {
		<-gate
		slow.handle(m)
	})
	subscribe(t, b, "drain", fast.handle)
	for _, d := range numbered(n) {
		publish(t, b, "drain", d)
	}
	flush(t, b) // on one connection, the messages are now pending locally
	waitCount(t, &fast, n, "the fast subscriber")

	done := make(chan error, 1)
	go func() { done <- b.Drain(ctxT(t)) }()
	select {
	case err := <-done:
		t.Fatalf("Drain returned %v while a handler still had messages pending", err)
	case <-time.After(quietPeriod):
	}
	gateOnce.Do(func() { close(gate) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Drain: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Drain did not return within %v", waitTimeout)
	}
	if diff := cmp.Diff(numbered(n), slow.data()); diff != "" {
		t.Errorf("messages pending at Drain (-want +got):\n%s", diff)
	}
	if err := b.Publish("drain", nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Drain = %v, want ErrClosed", err)
	}
	if err := b.Drain(ctxT(t)); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("second Drain = %v, want ErrClosed", err)
	}
}

func testDrainDeadline(t *testing.T, connect Connect) {
	_, b := connect(t)
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	var entered sync.Once
	inHandler := make(chan struct{})
	subscribe(t, b, "stuck", func(*bus.Msg) {
		entered.Do(func() { close(inHandler) })
		<-gate
	})
	publish(t, b, "stuck", "x")
	publish(t, b, "stuck", "y")
	flush(t, b)
	select {
	case <-inHandler:
	case <-time.After(waitTimeout):
		t.Fatal("handler never called")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Drain(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Drain past its deadline = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Drain ignored its context for %v", waitTimeout)
	}
	if err := b.Publish("stuck", nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after an expired Drain = %v, want ErrClosed", err)
	}
}

func testUseAfterClose(t *testing.T, connect Connect) {
	a, _ := connect(t)
	sub := subscribe(t, a, "closing", func(*bus.Msg) {})
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	nop := func(*bus.Msg) {}
	checks := map[string]error{
		"Publish":        a.Publish("x", nil),
		"PublishRequest": a.PublishRequest("x", "y", nil),
		"Flush":          a.Flush(ctxT(t)),
		"Drain":          a.Drain(ctxT(t)),
	}
	_, checks["Subscribe"] = a.Subscribe("x", nop)
	_, checks["QueueSubscribe"] = a.QueueSubscribe("x", "q", nop)
	_, checks["Request"] = a.Request(ctxT(t), "x", nil)
	for op, err := range checks {
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", op, err)
		}
	}
	if err := sub.Unsubscribe(); !errors.Is(err, bus.ErrBadSubscription) {
		t.Errorf("Unsubscribe after Close = %v, want ErrBadSubscription", err)
	}
	if st := a.Stats(); st.Connected {
		t.Error("Stats().Connected = true after Close")
	}
}

func testCloseLeavesOther(t *testing.T, connect Connect) {
	a, b := connect(t)
	var onA, onB recorder
	subscribe(t, a, "shared", onA.handle)
	subscribe(t, b, "shared", onB.handle)
	flush(t, a, b)
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	publish(t, b, "shared", "after a closed")
	flush(t, b)
	waitCount(t, &onB, 1, "the open connection")
	quiet()
	if n := onA.len(); n != 0 {
		t.Errorf("the closed connection's handler got %d messages, want 0", n)
	}
	if !b.Stats().Connected {
		t.Error("closing one connection disconnected the other")
	}
	echo(t, b, "still.up", "up:")
	flush(t, b)
	if m, err := b.Request(ctxT(t), "still.up", []byte("?")); err != nil || string(m.Data) != "up:?" {
		t.Errorf("Request on the open connection = %v, %v; want reply %q", m, err, "up:?")
	}
	if _, err := b.Request(ctxT(t), "nobody", nil); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("Request on the open connection = %v, want ErrNoResponders", err)
	}
}
