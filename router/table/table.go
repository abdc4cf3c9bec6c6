// Package table is the router's route table: host names (with an optional
// path prefix) mapped to pools of backend endpoints, fed by router.register
// and router.unregister and read on every proxied request.
//
// Reads are lock-free: the table is split into shards, each an immutable map
// behind an atomic pointer, and every pool keeps its endpoints in an
// immutable slice behind an atomic pointer. Writers take the shard's mutex
// and publish a new copy, so a registration is visible to the next request.
// Refreshing an endpoint that is already registered (the common case: every
// registrar re-registers every few seconds) copies nothing; it only stores a
// timestamp.
package table

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// numShards spreads writers and bounds the cost of a copy-on-write insert:
// with 100,000 hosts a shard holds about 100 entries, so adding a host copies
// a small map (a few microseconds) while lookups never lock.
const numShards = 1024

// maxHostLen is the longest DNS name; longer hosts never match.
const maxHostLen = 253

// Table maps hosts to pools. The zero value is not usable; call New.
type Table struct {
	seed      maphash.Seed
	shards    [numShards]shard
	wildcards atomic.Int64 // number of wildcard hosts, to skip suffix probes
	routes    atomic.Int64 // number of pools
	endpoints atomic.Int64 // number of endpoints over all pools
}

type shard struct {
	mu sync.Mutex                        // serialises writers
	m  atomic.Pointer[map[string]*entry] // read without locking
}

// entry is one host name with its pools, longest path prefix first.
type entry struct {
	host  string
	pools atomic.Pointer[[]*Pool]
}

// New returns an empty table.
func New() *Table {
	t := &Table{seed: maphash.MakeSeed()}
	for i := range t.shards {
		m := map[string]*entry{}
		t.shards[i].m.Store(&m)
	}
	return t
}

func (t *Table) shardFor(host string) *shard {
	return &t.shards[maphash.String(t.seed, host)%numShards]
}

// Routes returns the number of routes (host and path prefix pairs).
func (t *Table) Routes() int { return int(t.routes.Load()) }

// Endpoints returns the number of endpoints summed over all routes.
func (t *Table) Endpoints() int { return int(t.endpoints.Load()) }

// Lookup returns the pool serving host and path, or nil when no route
// matches. host may carry a port, which is ignored, and is matched without
// regard to case; exact names win over wildcards ("*.example.com" matches
// "a.example.com" and "a.b.example.com"), the most specific wildcard first.
// Within a host the longest registered path prefix that ends at a segment
// boundary wins. Lookup does not allocate.
func (t *Table) Lookup(host, path string) *Pool {
	var buf [maxHostLen + 1]byte
	h, ok := normalize(host, &buf)
	if !ok {
		return nil
	}
	if e := t.get(h); e != nil {
		if p := e.match(path); p != nil {
			return p
		}
	}
	if t.wildcards.Load() == 0 {
		return nil
	}
	// Probe "*.b.example.com", then "*.example.com": write "*" just before
	// each dot inside buf so the probe key needs no allocation.
	for i := 0; i < len(h); i++ {
		if h[i] != '.' || i == 0 {
			continue
		}
		var wb [maxHostLen + 2]byte
		wb[0] = '*'
		n := 1 + copy(wb[1:], h[i:])
		if e := t.get(unsafe.String(&wb[0], n)); e != nil {
			if p := e.match(path); p != nil {
				return p
			}
		}
	}
	return nil
}

// LookupBytes is Lookup for byte slices, as fast servers hand them out. It
// does not retain host or path.
func (t *Table) LookupBytes(host, path []byte) *Pool {
	return t.Lookup(bytesString(host), bytesString(path))
}

func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (t *Table) get(host string) *entry {
	return (*t.shardFor(host).m.Load())[host]
}

// normalize strips a port and a trailing dot and lowercases host, using buf
// when it must change bytes. It reports false for hosts too long to match.
func normalize(host string, buf *[maxHostLen + 1]byte) (string, bool) {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) > maxHostLen {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			n := copy(buf[:], host)
			for j := i; j < n; j++ {
				if c := buf[j]; 'A' <= c && c <= 'Z' {
					buf[j] = c + 'a' - 'A'
				}
			}
			return unsafe.String(&buf[0], n), true
		}
	}
	return host, true
}

// match returns the pool of the longest prefix of path, or nil.
func (e *entry) match(path string) *Pool {
	for _, p := range *e.pools.Load() {
		if p.path == "" {
			return p
		}
		if strings.HasPrefix(path, p.path) && (len(path) == len(p.path) || path[len(p.path)] == '/' || path[len(p.path)] == '?') {
			return p
		}
	}
	return nil
}

// SplitURI splits a registered URI into its normalised host (lowercase, no
// port, no trailing dot) and path prefix (no trailing slash, "" for the
// whole host).
func SplitURI(uri string) (host, path string) {
	host, path, _ = strings.Cut(uri, "/")
	var buf [maxHostLen + 1]byte
	h, _ := normalize(host, &buf)
	host = strings.Clone(h)
	path = strings.TrimRight(path, "/")
	if path != "" {
		path = "/" + path
	}
	return host, path
}

// Upsert adds the endpoint described by ep to the route uri, or refreshes
// its last-seen time to now when an endpoint with the same address is
// already there (replacing its identity if the instance changed). It reports
// whether a new endpoint was added.
func (t *Table) Upsert(uri string, ep EndpointInfo, now time.Time) bool {
	host, path := SplitURI(uri)
	if host == "" {
		return false
	}
	s := t.shardFor(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := (*s.m.Load())[host]
	if e == nil {
		e = &entry{host: host}
		empty := []*Pool{}
		e.pools.Store(&empty)
		t.storeEntry(s, host, e)
		if strings.HasPrefix(host, "*.") {
			t.wildcards.Add(1)
		}
	}
	p := e.pool(path)
	if p == nil {
		p = newPool(host, path)
		pools := append([]*Pool{p}, *e.pools.Load()...)
		sortPools(pools)
		e.pools.Store(&pools)
		t.routes.Add(1)
	}
	return p.upsert(t, ep, now)
}

// Remove removes the endpoint with address addr from route uri. The route
// itself stays, empty, so that it answers "no live endpoint" rather than
// "unknown host" until it is pruned after its grace period. It reports
// whether an endpoint was removed.
func (t *Table) Remove(uri, addr string, now time.Time) bool {
	host, path := SplitURI(uri)
	s := t.shardFor(host)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := (*s.m.Load())[host]
	if e == nil {
		return false
	}
	p := e.pool(path)
	if p == nil {
		return false
	}
	return p.remove(t, addr, now)
}

func (e *entry) pool(path string) *Pool {
	for _, p := range *e.pools.Load() {
		if p.path == path {
			return p
		}
	}
	return nil
}

// storeEntry publishes a copy of s's map with host set to e (or removed when
// e is nil). The caller holds s.mu.
func (t *Table) storeEntry(s *shard, host string, e *entry) {
	old := *s.m.Load()
	m := make(map[string]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if e == nil {
		delete(m, host)
	} else {
		m[host] = e
	}
	s.m.Store(&m)
}

func sortPools(pools []*Pool) {
	// Insertion sort: pools per host are few. Longest path first.
	for i := 1; i < len(pools); i++ {
		for j := i; j > 0 && len(pools[j].path) > len(pools[j-1].path); j-- {
			pools[j], pools[j-1] = pools[j-1], pools[j]
		}
	}
}

// PruneResult counts what a Prune removed.
type PruneResult struct {
	Endpoints int // endpoints not refreshed since the cutoff
	Routes    int // routes empty since before the grace cutoff
}

// Prune removes, as of now, endpoints not registered within threshold and
// routes that have had no endpoint for longer than grace.
func (t *Table) Prune(now time.Time, threshold, grace time.Duration) PruneResult {
	var res PruneResult
	nowNs := now.UnixNano()
	staleNs, emptyNs := now.Add(-threshold).UnixNano(), now.Add(-grace).UnixNano()
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for host, e := range *s.m.Load() {
			pools := *e.pools.Load()
			keep := pools[:0:0]
			for _, p := range pools {
				res.Endpoints += p.prune(t, staleNs, nowNs)
				if es := p.emptySince.Load(); es != 0 && es <= emptyNs {
					res.Routes++
					t.routes.Add(-1)
					continue
				}
				keep = append(keep, p)
			}
			if len(keep) == len(pools) {
				continue
			}
			if len(keep) == 0 {
				t.storeEntry(s, host, nil)
				if strings.HasPrefix(host, "*.") {
					t.wildcards.Add(-1)
				}
				continue
			}
			e.pools.Store(&keep)
		}
		s.mu.Unlock()
	}
	return res
}

// Touch sets the last-seen time of every endpoint to now. The router calls
// it when the bus comes back after an outage, so endpoints whose refreshes
// were lost on the way are not pruned before their registrars had a chance
// to re-register.
func (t *Table) Touch(now time.Time) {
	ns := now.UnixNano()
	t.Walk(func(p *Pool) {
		for _, ep := range p.Endpoints() {
			ep.lastSeen.Store(ns)
		}
	})
}

// Walk calls f for every pool. Pools added or removed during the walk may
// or may not be visited.
func (t *Table) Walk(f func(*Pool)) {
	for i := range t.shards {
		for _, e := range *t.shards[i].m.Load() {
			for _, p := range *e.pools.Load() {
				f(p)
			}
		}
	}
}
