package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/controller/store"
)

// access is who may call a route.
type access int

const (
	accessNone     access = iota // anyone
	accessOptional               // anyone; the user is known if a token is sent
	accessUser                   // a logged-in user
	accessAdmin                  // an administrator
	accessBulk                   // HTTP basic auth with the bulk credentials
)

// call is one request being served.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	params map[string]string
	// user is the effective user (the Proxy-User target for admins); nil
	// when anonymous.
	user *store.User
	// caller is who presented the token.
	caller *store.User
	// admin reports whether the caller is an administrator.
	admin bool
}

// param returns a decoded path parameter.
func (k *call) param(name string) string { return k.params[name] }

type route struct {
	method  string
	pattern []string
	access  access
	name    string
	h       func(*call) error
}

// routeTable lists every route of the API (PROTOCOL.md §1.3 plus kiln's
// extensions). Tests enumerate it for the authorization matrix.
func (c *Controller) routeTable() []route {
	r := func(method, pattern string, a access, h func(*call) error) route {
		return route{method: method, pattern: strings.Split(strings.Trim(pattern, "/"), "/"), access: a, name: method + " " + pattern, h: h}
	}
	return []route{
		r("GET", "/", accessNone, c.index),
		r("GET", "/info", accessOptional, c.getInfo),
		r("GET", "/info/services", accessUser, c.getServiceInfo),
		r("GET", "/info/runtimes", accessNone, c.getRuntimes),
		r("GET", "/users", accessAdmin, c.listUsers),
		r("POST", "/users", accessOptional, c.createUser),
		r("POST", "/users/*email/tokens", accessOptional, c.login),
		r("DELETE", "/users/*email/tokens", accessUser, c.logout),
		r("GET", "/users/*email", accessUser, c.getUser),
		r("PUT", "/users/*email", accessUser, c.updateUser),
		r("DELETE", "/users/*email", accessAdmin, c.deleteUser),
		r("POST", "/apps", accessUser, c.createApp),
		r("GET", "/apps", accessUser, c.listApps),
		r("GET", "/apps/:name", accessUser, c.getApp),
		r("PUT", "/apps/:name", accessUser, c.updateApp),
		r("DELETE", "/apps/:name", accessUser, c.deleteApp),
		r("PUT", "/apps/:name/application", accessUser, c.upload),
		r("POST", "/apps/:name/application", accessUser, c.upload),
		r("GET", "/apps/:name/application", accessUser, c.download),
		r("GET", "/apps/:name/crashes", accessUser, c.crashes),
		r("GET", "/apps/:name/instances", accessUser, c.instances),
		r("GET", "/apps/:name/stats", accessUser, c.stats),
		r("GET", "/apps/:name/update", accessUser, c.updateStatus),
		r("PUT", "/apps/:name/update", accessUser, c.restart),
		r("POST", "/apps/:name/restart", accessUser, c.restart),
		r("GET", "/apps/:name/droplets", accessUser, c.listDroplets),
		r("GET", "/apps/:name/events", accessUser, c.listEvents),
		r("POST", "/apps/:name/rollback", accessUser, c.rollback),
		r("GET", "/apps/:name/logs", accessUser, c.appLogs),
		r("GET", "/apps/:name/staging_log", accessUser, c.stagingLog),
		r("GET", "/apps/:name/instances/:index/files", accessUser, c.files),
		r("GET", "/apps/:name/instances/:index/files/*path", accessUser, c.files),
		r("POST", "/resources", accessUser, c.matchResources),
		r("GET", "/staged_droplets/:id/:hash", accessNone, c.stagedDroplet),
		r("GET", "/bulk/apps", accessBulk, c.bulkApps),
		r("GET", "/services", accessUser, c.listServices),
		r("POST", "/services", accessUser, c.createService),
		r("POST", "/services/v1/brokers", accessAdmin, c.registerBroker),
		r("POST", "/services/:label/tokens", accessNone, c.notImplemented),
		r("DELETE", "/services/:label/tokens", accessNone, c.notImplemented),
		r("GET", "/services/:alias", accessUser, c.getService),
		r("DELETE", "/services/:alias", accessUser, c.deleteService),
	}
}

// match reports whether segs match the pattern and fills params.
func (rt *route) match(segs []string) (map[string]string, bool) {
	params := map[string]string{}
	p := rt.pattern
	i := 0
	for pi, ps := range p {
		if strings.HasPrefix(ps, "*") {
			// A glob takes as many segments as leave room for the rest of
			// the pattern (emails contain dots; paths contain slashes).
			rest := p[pi+1:]
			end := len(segs) - len(rest)
			if end <= i {
				return nil, false
			}
			params[ps[1:]] = strings.Join(segs[i:end], "/")
			for j, rs := range rest {
				if segs[end+j] != rs {
					return nil, false
				}
			}
			return params, params[ps[1:]] != ""
		}
		if i >= len(segs) {
			return nil, false
		}
		switch {
		case strings.HasPrefix(ps, ":"):
			if segs[i] == "" {
				return nil, false
			}
			params[ps[1:]] = segs[i]
		case ps != segs[i]:
			return nil, false
		}
		i++
	}
	return params, i == len(segs)
}

// splitPath splits an escaped path into decoded segments, so that an app
// name or email holding a percent-encoded "/" stays one segment.
func splitPath(escaped string) ([]string, bool) {
	escaped = strings.Trim(escaped, "/")
	if escaped == "" {
		return []string{""}, true
	}
	raw := strings.Split(escaped, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		segs[i] = d
	}
	return segs, true
}

func (c *Controller) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("request-panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
			c.writeError(w, r, fmt.Errorf("panic: %v", p))
		}
	}()
	segs, ok := splitPath(r.URL.EscapedPath())
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	for i := range c.routes {
		rt := &c.routes[i]
		if rt.method != method {
			continue
		}
		params, ok := rt.match(segs)
		if !ok {
			continue
		}
		k := &call{w: w, r: r, params: params}
		err := c.authorize(k, rt.access)
		if err == nil {
			err = rt.h(k)
		}
		if err != nil {
			c.writeError(w, r, err)
		}
		c.m.observe(rt.name, time.Since(start))
		return
	}
	// Unknown routes answer 404 with an empty body, as the original did.
	w.WriteHeader(http.StatusNotFound)
}

// authorize resolves the caller and the effective user and enforces a.
func (c *Controller) authorize(k *call, a access) error {
	if a == accessNone {
		return nil
	}
	if a == accessBulk {
		u, p, ok := k.r.BasicAuth()
		if !ok || !constantEqual(u, c.cfg.BulkUser) || !constantEqual(p, c.bulkPW) {
			k.w.Header().Set("WWW-Authenticate", `Basic realm="bulk"`)
			return &Error{Status: http.StatusUnauthorized, Code: 200, Description: "Operation not permitted"}
		}
		return nil
	}
	if c.cfg.HTTPSRequired && !isHTTPS(k.r) {
		return ErrHTTPSRequired
	}
	tok := strings.TrimSpace(k.r.Header.Get("Authorization"))
	if tok != "" {
		u, err := c.userForToken(k.r.Context(), tok)
		if err != nil {
			if a == accessOptional {
				tok = ""
			} else {
				return err
			}
		} else {
			k.caller, k.user = &u, &u
			k.admin = c.isAdmin(u)
		}
	}
	if tok == "" && a != accessOptional {
		return ErrForbidden
	}
	if a == accessAdmin && !k.admin {
		return ErrForbidden
	}
	if k.admin && c.cfg.HTTPSRequiredForAdmins && !isHTTPS(k.r) {
		return ErrHTTPSRequired
	}
	if proxy := k.r.Header.Get("Proxy-User"); proxy != "" && k.caller != nil {
		if !k.admin {
			return ErrForbidden
		}
		target, err := c.deps.Store.GetUser(k.r.Context(), normalizeEmail(proxy))
		if errors.Is(err, store.ErrNotFound) {
			return ErrUserNotFound
		}
		if err != nil {
			return fmt.Errorf("proxy user: %w", err)
		}
		k.user = &target
	}
	return nil
}

// isHTTPS reports whether the client reached the platform over HTTPS: a
// TLS connection, or a front end's X-Forwarded-Proto (the original read the
// underscore spelling X-Forwarded_Proto; both are accepted).
func isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	for _, h := range []string{"X-Forwarded-Proto", "X-Forwarded_Proto"} {
		if strings.EqualFold(r.Header.Get(h), "https") {
			return true
		}
	}
	return false
}

// writeError renders err as {code, description}.
func (c *Controller) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			e = ErrTooLarge.with(mbe.Limit)
		case errors.Is(err, store.ErrConflict):
			e = ErrLocking
		default:
			c.log.Error("request-failed", "method", r.Method, "path", r.URL.Path, "error", err)
			e = ErrSystem
		}
	}
	c.m.apiError(e.Code)
	writeJSON(w, e.Status, map[string]any{"code": e.Code, "description": e.Description})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decodeBody reads a JSON body of at most MaxBodyBytes into v. Unknown
// fields are ignored; wrong types are 400/100.
func (c *Controller) decodeBody(k *call, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(k.w, k.r.Body, c.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return ErrTooLarge.with(mbe.Limit)
		}
		return ErrBadRequest.with("cannot read body")
	}
	return decodeJSON(body, v)
}

// decodeJSON decodes a request body; it is the target of the fuzz tests.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return ErrBadRequest.with(clip(err.Error()))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
