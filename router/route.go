package router

import (
	crand "crypto/rand"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/router/table"
)

// Header and cookie names the router reads or sets.
const (
	// VCAPCookie carries the private instance id of a sticky session.
	VCAPCookie = "__VCAP_ID__"
	// InstanceHeader names one app instance as "<app id>:<index>"; the
	// request goes to exactly that instance or is refused.
	InstanceHeader = "X-CF-App-Instance"
	// RequestIDHeader carries the request's id, kept if the client set it.
	RequestIDHeader = "X-Vcap-Request-Id"
	// RequestStartHeader is the time the router received the request, in
	// Unix milliseconds, kept if already set.
	RequestStartHeader = "X-Request-Start"
)

// hopHeaders are meaningful for one connection only (RFC 9110 §7.6.1) and
// are never forwarded, in either direction.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// failure is the router's own answer to a request it cannot forward.
type failure struct {
	status int
	msg    string
}

func notFound(host string) *failure {
	return &failure{404, "404 Not Found: no route is registered for host '" + host + "'.\n"}
}

func noEndpoint(host string) *failure {
	return &failure{503, "503 Service Unavailable: route '" + host + "' has no live instance right now (it may be restarting).\n"}
}

func badGateway(host string) *failure {
	return &failure{502, "502 Bad Gateway: no instance of '" + host + "' could be reached.\n"}
}

func (r *Router) count(f *failure) {
	switch f.status {
	case 404:
		r.metrics.notFound.Add(1)
	case 503:
		r.metrics.noEndpoint.Add(1)
	case 502:
		r.metrics.badGateway.Add(1)
	case 400:
		r.metrics.badRequest.Add(1)
	}
}

// lookup finds the pool for a request or the failure to answer with. A
// route with no endpoint is "restarting" (503) until it has been empty for
// EmptyRouteGrace, then unknown (404).
func (r *Router) lookup(host, path string, now func() time.Time) (*table.Pool, *failure) {
	p := r.table.Lookup(host, path)
	if p == nil {
		return nil, notFound(host)
	}
	if p.Len() == 0 {
		if since, ok := p.EmptySince(); ok && now().Sub(since) >= r.cfg.EmptyRouteGrace {
			return nil, notFound(host)
		}
		return nil, noEndpoint(host)
	}
	return p, nil
}

// choose picks the endpoint for the next attempt: the instance named by the
// instance header, else the sticky instance on a first attempt, else one by
// the configured strategy avoiding those already tried. It returns nil and
// a failure when no attempt is left.
func (r *Router) choose(p *table.Pool, instance, sticky string, nowNs int64, tried []*table.Endpoint) (*table.Endpoint, *failure) {
	if instance != "" {
		app, idx, ok := strings.Cut(instance, ":")
		n, err := strconv.Atoi(idx)
		if !ok || app == "" || err != nil || n < 0 {
			return nil, &failure{400, "400 Bad Request: " + InstanceHeader + " must be '<app id>:<index>'.\n"}
		}
		e := p.ByAppIndex(app, n)
		if e == nil {
			return nil, &failure{404, "404 Not Found: instance " + instance + " of route '" + p.Route() + "' is not registered.\n"}
		}
		if len(tried) > 0 {
			return nil, badGateway(p.Route())
		}
		return e, nil
	}
	if sticky != "" && len(tried) == 0 {
		if e := p.ByInstanceID(sticky); e != nil && !e.Failed(nowNs) {
			return e, nil
		}
	}
	if e := p.Pick(r.cfg.Strategy, nowNs, tried); e != nil {
		return e, nil
	}
	return nil, badGateway(p.Route())
}

// stickyCookie returns the __VCAP_ID__ Set-Cookie value to add when a
// response sets the app's session cookie: the session cookie's line with
// its name and value replaced, so it shares path, domain, expiry and flags.
// ok is false when setCookie is not the session cookie.
func stickyCookie(setCookie, session, instanceID string) (string, bool) {
	name, _, found := strings.Cut(setCookie, "=")
	if !found || !strings.EqualFold(strings.TrimSpace(name), session) || instanceID == "" {
		return "", false
	}
	attrs := ""
	if i := strings.IndexByte(setCookie, ';'); i >= 0 {
		attrs = setCookie[i:]
	}
	if !containsFold(attrs, "path=") {
		attrs = "; Path=/" + attrs
	}
	return VCAPCookie + "=" + instanceID + attrs, true
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// idGen makes version 4 UUIDs from per-P ChaCha8 generators seeded from
// crypto/rand: unpredictable, and far cheaper than a getrandom system call
// per request.
type idGen struct{ pool sync.Pool }

func (g *idGen) appendUUID(dst []byte) []byte {
	src, _ := g.pool.Get().(*rand.ChaCha8)
	if src == nil {
		var seed [32]byte
		_, _ = crand.Read(seed[:]) // never fails
		src = rand.NewChaCha8(seed)
	}
	var b [16]byte
	_, _ = src.Read(b[:]) // never fails
	g.pool.Put(src)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	return dst
}
