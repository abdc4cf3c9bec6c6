package membus

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Matching a subject walks a trie of subscription tokens, so its cost grows
// with the number of tokens and wildcards on the path, not with the number of
// subscriptions. Results are cached per literal subject; every change to the
// trie bumps a generation counter, which invalidates all cached results at
// once without touching them, and a stale entry is simply recomputed on its
// next use. Publishers mostly reuse a small set of subjects, so the cached
// path (two uncontended read locks and a map lookup) is the common one.

const (
	// cacheMax bounds the result cache. Kernel components publish on a
	// few hundred distinct subjects (one per DEA or app in some cases);
	// 4096 covers that comfortably while keeping the cache a few hundred
	// KB at most.
	cacheMax = 4096
	// cacheKeep is what an eviction sweep shrinks the cache to, so that
	// sweeps happen once per cacheMax-cacheKeep misses, not on every miss.
	cacheKeep = cacheMax * 3 / 4
)

// result is the immutable set of subscriptions a literal subject matches.
type result struct {
	plain  []*subscription
	groups [][]*subscription // one slice of members per queue group name
}

func (r *result) empty() bool { return len(r.plain) == 0 && len(r.groups) == 0 }

// level is one token position of the trie.
type level struct {
	literal map[string]*node
	star    *node // "*": any single token
	tail    *node // ">": one or more remaining tokens
}

func (l *level) empty() bool { return len(l.literal) == 0 && l.star == nil && l.tail == nil }

// node holds the subscriptions whose subject ends at this token, and the
// level of the next token for longer subjects.
type node struct {
	next   *level
	plain  map[*subscription]struct{}
	groups map[string]map[*subscription]struct{}
}

func (n *node) empty() bool {
	return len(n.plain) == 0 && len(n.groups) == 0 && (n.next == nil || n.next.empty())
}

type cacheEntry struct {
	gen uint64
	res *result
}

// sublist maps literal subjects to the subscriptions whose (possibly
// wildcard) subjects match them.
type sublist struct {
	mu    sync.RWMutex // guards root and count; gen changes only under mu
	root  *level
	count int
	gen   atomic.Uint64

	cacheMu sync.RWMutex
	cache   map[string]cacheEntry
}

func newSublist() *sublist {
	return &sublist{root: &level{}, cache: make(map[string]cacheEntry)}
}

// insert adds s under its subject. The subject must be valid.
func (sl *sublist) insert(s *subscription) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	l := sl.root
	var n *node
	for rest := s.subject; ; {
		var tok string
		tok, rest = cutToken(rest)
		n = l.child(tok)
		if rest == "" {
			break
		}
		if n.next == nil {
			n.next = &level{}
		}
		l = n.next
	}
	if s.queue == "" {
		if n.plain == nil {
			n.plain = make(map[*subscription]struct{})
		}
		n.plain[s] = struct{}{}
	} else {
		if n.groups == nil {
			n.groups = make(map[string]map[*subscription]struct{})
		}
		g := n.groups[s.queue]
		if g == nil {
			g = make(map[*subscription]struct{})
			n.groups[s.queue] = g
		}
		g[s] = struct{}{}
	}
	sl.count++
	sl.gen.Add(1)
}

// child returns the node for tok, creating it.
func (l *level) child(tok string) *node {
	var p **node
	switch tok {
	case "*":
		p = &l.star
	case ">":
		p = &l.tail
	default:
		if n := l.literal[tok]; n != nil {
			return n
		}
		if l.literal == nil {
			l.literal = make(map[string]*node)
		}
		n := &node{}
		l.literal[tok] = n
		return n
	}
	if *p == nil {
		*p = &node{}
	}
	return *p
}

// remove deletes s and prunes the nodes left empty. It reports whether s
// was present.
func (sl *sublist) remove(s *subscription) bool {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if !removeFrom(sl.root, s.subject, s) {
		return false
	}
	sl.count--
	sl.gen.Add(1)
	return true
}

func removeFrom(l *level, subject string, s *subscription) bool {
	tok, rest := cutToken(subject)
	var n *node
	switch tok {
	case "*":
		n = l.star
	case ">":
		n = l.tail
	default:
		n = l.literal[tok]
	}
	if n == nil {
		return false
	}
	var found bool
	switch {
	case rest != "":
		found = n.next != nil && removeFrom(n.next, rest, s)
		if found && n.next.empty() {
			n.next = nil
		}
	case s.queue == "":
		_, found = n.plain[s]
		delete(n.plain, s)
	default:
		g := n.groups[s.queue]
		_, found = g[s]
		delete(g, s)
		if len(g) == 0 {
			delete(n.groups, s.queue)
		}
	}
	if found && n.empty() {
		switch tok {
		case "*":
			l.star = nil
		case ">":
			l.tail = nil
		default:
			delete(l.literal, tok)
		}
	}
	return found
}

// len reports the number of subscriptions in the trie.
func (sl *sublist) len() int {
	sl.mu.RLock()
	defer sl.mu.RUnlock()
	return sl.count
}

// match returns the subscriptions matching the literal subject. The result
// is shared and must not be modified.
func (sl *sublist) match(subject string) *result {
	gen := sl.gen.Load()
	sl.cacheMu.RLock()
	e, ok := sl.cache[subject]
	sl.cacheMu.RUnlock()
	if ok && e.gen == gen {
		return e.res
	}

	sl.mu.RLock()
	// Read the generation under the trie lock: the walk below sees exactly
	// the trie of this generation, so the entry is never newer than its tag.
	gen = sl.gen.Load()
	var b resultBuilder
	b.collect(sl.root, subject)
	sl.mu.RUnlock()
	res := b.result()

	sl.cacheMu.Lock()
	if len(sl.cache) >= cacheMax {
		sl.sweep(gen)
	}
	sl.cache[subject] = cacheEntry{gen: gen, res: res}
	sl.cacheMu.Unlock()
	return res
}

// sweep shrinks the cache to cacheKeep entries, stale ones first. The
// caller holds cacheMu.
func (sl *sublist) sweep(gen uint64) {
	for k, e := range sl.cache {
		if e.gen != gen {
			delete(sl.cache, k)
		}
	}
	// Map iteration order is unspecified and varies between runs, which
	// makes this an inexpensive approximation of random eviction.
	for k := range sl.cache {
		if len(sl.cache) <= cacheKeep {
			break
		}
		delete(sl.cache, k)
	}
}

// resultBuilder accumulates matches while walking the trie.
type resultBuilder struct {
	plain  []*subscription
	groups map[string][]*subscription
}

func (b *resultBuilder) collect(l *level, subject string) {
	tok, rest := cutToken(subject)
	if l.tail != nil {
		b.add(l.tail) // ">" takes this token and all after it
	}
	b.step(l.star, rest)
	b.step(l.literal[tok], rest)
}

// step continues the walk below n with the remaining tokens, or takes n's
// subscriptions when the subject ends here.
func (b *resultBuilder) step(n *node, rest string) {
	switch {
	case n == nil:
	case rest == "":
		b.add(n)
	case n.next != nil:
		b.collect(n.next, rest)
	}
}

func (b *resultBuilder) add(n *node) {
	for s := range n.plain {
		b.plain = append(b.plain, s)
	}
	for q, members := range n.groups {
		if b.groups == nil {
			b.groups = make(map[string][]*subscription)
		}
		// Members of one queue name form one group even when they
		// subscribed to different (overlapping) subjects.
		for s := range members {
			b.groups[q] = append(b.groups[q], s)
		}
	}
}

func (b *resultBuilder) result() *result {
	r := &result{plain: b.plain}
	for _, members := range b.groups {
		r.groups = append(r.groups, members)
	}
	return r
}

func cutToken(s string) (tok, rest string) {
	if i := strings.IndexByte(s, '.'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}
