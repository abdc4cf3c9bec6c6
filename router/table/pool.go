package table

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// EndpointInfo describes a backend as a registration names it.
type EndpointInfo struct {
	// Addr is host:port of the backend.
	Addr string
	// AppID is the app the backend runs, "" for components.
	AppID string
	// PrivateInstanceID identifies the instance; sticky sessions use it.
	PrivateInstanceID string
	// Index is the instance index, or -1 when unknown.
	Index int
	// Tags are the registration's tags (component, framework, ...).
	Tags map[string]string
}

// Endpoint is one backend of a pool. Its identity fields never change after
// it is published; its counters are updated atomically.
type Endpoint struct {
	EndpointInfo
	lastSeen    atomic.Int64 // Unix nanoseconds of the last registration
	inFlight    atomic.Int64 // requests being proxied to it now
	failedUntil atomic.Int64 // Unix nanoseconds until which it is avoided
}

// LastSeen returns when the endpoint was last registered.
func (e *Endpoint) LastSeen() time.Time { return time.Unix(0, e.lastSeen.Load()) }

// InFlight returns how many requests are being proxied to the endpoint.
func (e *Endpoint) InFlight() int64 { return e.inFlight.Load() }

// Begin counts a request sent to the endpoint; call End when it completes.
func (e *Endpoint) Begin() { e.inFlight.Add(1) }

// End counts a completed request.
func (e *Endpoint) End() { e.inFlight.Add(-1) }

// MarkFailed makes selection avoid the endpoint until until, while other
// endpoints are available.
func (e *Endpoint) MarkFailed(until time.Time) { e.failedUntil.Store(until.UnixNano()) }

// Failed reports whether the endpoint is marked failed at now (Unix ns).
func (e *Endpoint) Failed(nowNs int64) bool { return e.failedUntil.Load() > nowNs }

// Pool is the set of endpoints serving one route.
type Pool struct {
	host, path string
	endpoints  atomic.Pointer[[]*Endpoint] // immutable; replaced on change
	emptySince atomic.Int64                // Unix ns since it has been empty, 0 if not
}

func newPool(host, path string) *Pool {
	p := &Pool{host: host, path: path}
	empty := []*Endpoint{}
	p.endpoints.Store(&empty)
	return p
}

// Host returns the route's normalised host.
func (p *Pool) Host() string { return p.host }

// Path returns the route's path prefix, "" for the whole host.
func (p *Pool) Path() string { return p.path }

// Route returns host and path as one URI.
func (p *Pool) Route() string { return p.host + p.path }

// Endpoints returns the pool's endpoints. The slice must not be modified.
func (p *Pool) Endpoints() []*Endpoint { return *p.endpoints.Load() }

// Len returns the number of endpoints.
func (p *Pool) Len() int { return len(*p.endpoints.Load()) }

// EmptySince returns since when the pool has had no endpoint, and false
// when it has endpoints.
func (p *Pool) EmptySince() (time.Time, bool) {
	ns := p.emptySince.Load()
	if ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// upsert adds or refreshes ep. The caller holds the shard's mutex.
func (p *Pool) upsert(t *Table, info EndpointInfo, now time.Time) bool {
	ns := now.UnixNano()
	old := *p.endpoints.Load()
	for i, e := range old {
		if e.Addr != info.Addr {
			continue
		}
		if e.PrivateInstanceID == info.PrivateInstanceID && e.AppID == info.AppID && e.Index == info.Index {
			e.lastSeen.Store(ns)
			return false
		}
		// Another instance took over the address: replace the endpoint.
		eps := append([]*Endpoint(nil), old...)
		eps[i] = newEndpoint(info, ns)
		p.endpoints.Store(&eps)
		return false
	}
	eps := make([]*Endpoint, len(old)+1)
	copy(eps, old)
	eps[len(old)] = newEndpoint(info, ns)
	p.endpoints.Store(&eps)
	p.emptySince.Store(0)
	t.endpoints.Add(1)
	return true
}

func newEndpoint(info EndpointInfo, ns int64) *Endpoint {
	e := &Endpoint{EndpointInfo: info}
	e.lastSeen.Store(ns)
	return e
}

// remove removes the endpoint at addr. The caller holds the shard's mutex.
func (p *Pool) remove(t *Table, addr string, now time.Time) bool {
	old := *p.endpoints.Load()
	for i, e := range old {
		if e.Addr != addr {
			continue
		}
		eps := make([]*Endpoint, 0, len(old)-1)
		eps = append(append(eps, old[:i]...), old[i+1:]...)
		p.endpoints.Store(&eps)
		t.endpoints.Add(-1)
		if len(eps) == 0 {
			p.emptySince.Store(now.UnixNano())
		}
		return true
	}
	return false
}

// prune drops endpoints last seen before staleNs and returns how many; a
// pool it empties is empty since nowNs. The caller holds the shard's mutex.
func (p *Pool) prune(t *Table, staleNs, nowNs int64) int {
	old := *p.endpoints.Load()
	n := 0
	for _, e := range old {
		if e.lastSeen.Load() < staleNs {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	eps := make([]*Endpoint, 0, len(old)-n)
	for _, e := range old {
		if e.lastSeen.Load() >= staleNs {
			eps = append(eps, e)
		}
	}
	p.endpoints.Store(&eps)
	t.endpoints.Add(int64(-n))
	if len(eps) == 0 {
		p.emptySince.Store(nowNs)
	}
	return n
}

// Strategy chooses among a pool's endpoints.
type Strategy int

const (
	// Random picks uniformly at random, as the original routers did.
	Random Strategy = iota
	// LeastInFlight picks two endpoints at random and takes the one with
	// fewer requests in flight ("power of two choices"): nearly as good as
	// scanning for the least loaded, at constant cost.
	LeastInFlight
)

// Pick chooses an endpoint using s, skipping those in tried and, while any
// other is left, those marked failed at nowNs. It returns nil when every
// endpoint has been tried.
func (p *Pool) Pick(s Strategy, nowNs int64, tried []*Endpoint) *Endpoint {
	eps := *p.endpoints.Load()
	n := len(eps)
	if n == 0 {
		return nil
	}
	if n == 1 {
		if len(tried) > 0 && tried[0] == eps[0] {
			return nil
		}
		return eps[0]
	}
	a := pickFrom(eps, rand.IntN(n), nowNs, tried)
	if a == nil || s != LeastInFlight {
		return a
	}
	b := pickFrom(eps, rand.IntN(n), nowNs, tried)
	if b != nil && b.inFlight.Load() < a.inFlight.Load() {
		return b
	}
	return a
}

// pickFrom scans from start for a usable endpoint: first one neither tried
// nor failed, else one not tried.
func pickFrom(eps []*Endpoint, start int, nowNs int64, tried []*Endpoint) *Endpoint {
	var fallback *Endpoint
	for i := range eps {
		e := eps[(start+i)%len(eps)]
		if contains(tried, e) {
			continue
		}
		if !e.Failed(nowNs) {
			return e
		}
		if fallback == nil {
			fallback = e
		}
	}
	return fallback
}

func contains(eps []*Endpoint, e *Endpoint) bool {
	for _, x := range eps {
		if x == e {
			return true
		}
	}
	return false
}

// ByInstanceID returns the endpoint with the given private instance id, or
// nil.
func (p *Pool) ByInstanceID(id string) *Endpoint {
	if id == "" {
		return nil
	}
	for _, e := range *p.endpoints.Load() {
		if e.PrivateInstanceID == id {
			return e
		}
	}
	return nil
}

// ByAppIndex returns the endpoint running instance index of app, or nil.
func (p *Pool) ByAppIndex(app string, index int) *Endpoint {
	for _, e := range *p.endpoints.Load() {
		if e.AppID == app && e.Index == index {
			return e
		}
	}
	return nil
}
