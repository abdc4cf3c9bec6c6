package membus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
)

func testSub(subject, queue string) *subscription {
	return &subscription{subject: subject, queue: queue}
}

// subjectsOf lists the subjects (and queues) in r, sorted, for comparison.
func subjectsOf(r *result) (plain []string, groups []string) {
	for _, s := range r.plain {
		plain = append(plain, s.subject)
	}
	for _, g := range r.groups {
		var members []string
		for _, s := range g {
			members = append(members, s.queue+":"+s.subject)
		}
		slices.Sort(members)
		groups = append(groups, strings.Join(members, ","))
	}
	slices.Sort(plain)
	slices.Sort(groups)
	return plain, groups
}

func TestSublistMatch(t *testing.T) {
	sl := newSublist()
	for _, s := range []*subscription{
		testSub("a.b.c", ""), testSub("a.*.c", ""), testSub("a.>", ""), testSub(">", ""),
		testSub("a.b", ""), testSub("*.b.*", ""), testSub("a.b.c", ""),
		testSub("a.b.c", "q1"), testSub("a.>", "q1"), testSub("a.*.c", "q2"), testSub("x.y", "q2"),
	} {
		sl.insert(s)
	}
	tests := []struct {
		subject       string
		plain, groups []string
	}{
		{"a.b.c", []string{">", "*.b.*", "a.*.c", "a.>", "a.b.c", "a.b.c"}, []string{"q1:a.>,q1:a.b.c", "q2:a.*.c"}},
		{"a.b", []string{">", "a.>", "a.b"}, []string{"q1:a.>"}},
		{"a", []string{">"}, nil},
		{"x.y", []string{">"}, []string{"q2:x.y"}},
		{"x.b.z", []string{">", "*.b.*"}, nil},
		{"a.b.c.d", []string{">", "a.>"}, []string{"q1:a.>"}},
	}
	for _, tc := range tests {
		for pass := range 2 { // uncached, then cached
			plain, groups := subjectsOf(sl.match(tc.subject))
			slices.Sort(tc.plain)
			if diff := cmp.Diff(tc.plain, plain); diff != "" {
				t.Errorf("match(%q) pass %d plain (-want +got):\n%s", tc.subject, pass, diff)
			}
			if diff := cmp.Diff(tc.groups, groups); diff != "" {
				t.Errorf("match(%q) pass %d groups (-want +got):\n%s", tc.subject, pass, diff)
			}
		}
	}
}

func TestSublistCacheInvalidation(t *testing.T) {
	sl := newSublist()
	if r := sl.match("a.b"); !r.empty() {
		t.Fatalf("empty sublist matched %v", r)
	}
	s := testSub("a.*", "")
	sl.insert(s)
	if r := sl.match("a.b"); len(r.plain) != 1 {
		t.Fatalf("after insert: %d matches, want 1 (stale cache?)", len(r.plain))
	}
	if !sl.remove(s) {
		t.Fatal("remove: not found")
	}
	if sl.remove(s) {
		t.Error("second remove found the subscription again")
	}
	if r := sl.match("a.b"); !r.empty() {
		t.Fatalf("after remove: %d matches, want 0 (stale cache?)", len(r.plain))
	}
	if !sl.root.empty() || sl.len() != 0 {
		t.Errorf("trie not pruned after removing everything: %+v", sl.root)
	}
}

func TestSublistCacheBounded(t *testing.T) {
	sl := newSublist()
	sl.insert(testSub(">", ""))
	for i := range 3 * cacheMax {
		sl.match(fmt.Sprintf("s.%d", i))
	}
	if n := len(sl.cache); n > cacheMax {
		t.Errorf("cache holds %d entries, bound is %d", n, cacheMax)
	}
}

func TestSublistCachedMatchAllocs(t *testing.T) {
	sl := newSublist()
	sl.insert(testSub("a.*.c", ""))
	sl.match("a.b.c")
	if n := testing.AllocsPerRun(100, func() { sl.match("a.b.c") }); n != 0 {
		t.Errorf("cached match allocates %v times, want 0", n)
	}
}

// randomSubject builds a subject from a small alphabet of tokens so that
// random subscriptions and subjects overlap often.
func randomSubject(r *rand.Rand, wild bool) string {
	toks := make([]string, 1+r.IntN(4))
	for i := range toks {
		switch x := r.IntN(10); {
		case wild && x == 0:
			toks[i] = "*"
		case wild && x == 1 && i == len(toks)-1:
			toks[i] = ">"
		default:
			toks[i] = string(rune('a' + r.IntN(3)))
		}
	}
	return strings.Join(toks, ".")
}

// TestSublistAgainstMatch checks the trie against bus.Match on random
// subscriptions, inserted and removed in random order.
func TestSublistAgainstMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	sl := newSublist()
	var live []*subscription
	for step := range 3000 {
		if len(live) > 0 && r.IntN(3) == 0 {
			i := r.IntN(len(live))
			if !sl.remove(live[i]) {
				t.Fatalf("step %d: remove %q: not found", step, live[i].subject)
			}
			live = slices.Delete(live, i, i+1)
		} else {
			queue := ""
			if r.IntN(4) == 0 {
				queue = fmt.Sprintf("q%d", r.IntN(2))
			}
			s := testSub(randomSubject(r, true), queue)
			if err := bus.ValidateSubject(s.subject); err != nil {
				t.Fatal(err)
			}
			sl.insert(s)
			live = append(live, s)
		}
		subject := randomSubject(r, false)
		got := sl.match(subject)
		wantPlain, wantGroups := 0, map[string]int{}
		for _, s := range live {
			if !bus.Match(s.subject, subject) {
				continue
			}
			if s.queue == "" {
				wantPlain++
			} else {
				wantGroups[s.queue]++
			}
		}
		gotGroups := map[string]int{}
		for _, g := range got.groups {
			gotGroups[g[0].queue] += len(g)
		}
		if len(got.plain) != wantPlain || !cmp.Equal(wantGroups, gotGroups) {
			t.Fatalf("step %d: match(%q) = %d plain %v groups, want %d plain %v groups", step, subject, len(got.plain), gotGroups, wantPlain, wantGroups)
		}
	}
	if sl.len() != len(live) {
		t.Errorf("len() = %d, want %d", sl.len(), len(live))
	}
}

// TestGoroutinesStop checks that every delivery goroutine exits on
// Unsubscribe, Close and Drain.
func TestGoroutinesStop(t *testing.T) {
	srv := NewServer(DefaultConfig())
	c := srv.Connect()
	nop := func(*bus.Msg) {}
	// The request is given up once it has reached the silent subscriber,
	// so that it has made the reply subscription whatever the machine's
	// load (a short timeout could expire before the request starts).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s1, _ := c.Subscribe("a", func(*bus.Msg) { cancel() })
	s2, _ := c.QueueSubscribe("b", "q", nop)
	s3, _ := c.Subscribe("c.>", nop)
	if _, err := c.Request(ctx, "a", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("request to a silent subscriber = %v, want it given up", err)
	}
	c.mu.Lock()
	replies := c.replies
	c.mu.Unlock()
	if replies == nil {
		t.Fatal("Request made no reply subscription")
	}
	if err := s1.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s1.(*subscription))
	d := srv.Connect()
	s4, _ := d.Subscribe("d", nop)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*subscription{s2.(*subscription), s3.(*subscription), replies} {
		waitDone(t, s)
	}
	if err := d.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s4.(*subscription))
	if n := srv.subs.len(); n != 0 {
		t.Errorf("%d subscriptions left in the trie", n)
	}
}

func waitDone(t *testing.T, s *subscription) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("delivery goroutine of %s did not stop", s.subject)
	}
}
