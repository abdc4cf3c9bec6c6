package router

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/router/accesslog"
	"github.com/kiln-paas/kiln/router/table"
)

// Handler returns the router as a net/http handler, for embedding in an
// http.Server of the caller's (HTTP/2, custom TLS, middleware). It shares
// the table, selection and header rules with Serve; it is the slower path
// (net/http allocates per request), so Serve is preferred for a dedicated
// listener.
func (r *Router) Handler() http.Handler { return http.HandlerFunc(r.serveHTTP) }

func (r *Router) newTransport() *http.Transport {
	return &http.Transport{
		DialContext:           r.dialer().DialContext,
		MaxIdleConns:          0, // no global cap; per backend below
		MaxIdleConnsPerHost:   r.cfg.MaxIdleConnsPerBackend,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: r.cfg.BackendIdleTimeout,
		DisableCompression:    true, // pass encodings through untouched
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// onceBody forwards a request body to a backend and records whether any of
// it was consumed, which decides whether a failed attempt may be retried.
// Close is a no-op: the server owns the client's body.
type onceBody struct {
	rc   io.ReadCloser
	read bool
}

func (b *onceBody) Read(p []byte) (int, error) { b.read = true; return b.rc.Read(p) }
func (b *onceBody) Close() error               { return nil }

func (r *Router) serveHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	rec := accesslog.Record{
		Host: req.Host, Start: start, Method: req.Method, URI: req.RequestURI, Proto: req.Proto,
		Referer: req.Referer(), UserAgent: req.UserAgent(), RemoteAddr: req.RemoteAddr,
	}
	defer func() {
		rec.Duration = time.Since(start)
		r.metrics.observe(rec.Status, rec.Duration)
		if r.access != nil {
			r.access.Log(&rec)
		}
	}()
	pool, fail := r.lookup(req.Host, req.URL.Path, r.clock.Now)
	if fail != nil {
		r.answerHTTP(w, &rec, fail)
		return
	}

	out := r.outboundHTTP(req)
	rec.XForwardedFor = out.Header.Get("X-Forwarded-For")
	rec.RequestID = out.Header.Get(RequestIDHeader)
	var body *onceBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &onceBody{rc: req.Body}
		out.Body = body
	}
	sticky := ""
	if c, err := req.Cookie(VCAPCookie); err == nil {
		sticky = c.Value
	}
	instance := req.Header.Get(InstanceHeader)
	var triedBuf [maxAttempts]*table.Endpoint
	tried := triedBuf[:0]
	for {
		nowNs := time.Now().UnixNano()
		ep, fail := r.choose(pool, instance, sticky, nowNs, tried)
		if fail == nil && len(tried) >= r.cfg.MaxAttempts {
			fail = badGateway(pool.Route())
		}
		if fail != nil {
			r.answerHTTP(w, &rec, fail)
			return
		}
		tried = append(tried, ep)
		rec.BackendAddr, rec.AppID = ep.Addr, ep.AppID
		out.URL.Host = ep.Addr
		ep.Begin()
		resp, err := r.httpTr.RoundTrip(out)
		if err != nil {
			ep.End()
			r.metrics.backendErrors.Add(1)
			dial := isDialError(err)
			if dial {
				ep.MarkFailed(time.Now().Add(r.cfg.FailureBackoff))
			}
			r.log.Warn("backend-failed", "addr", ep.Addr, "route", pool.Route(), "err", err)
			if req.Context().Err() == nil && (body == nil || !body.read) && (dial || idempotent(req.Method)) {
				continue
			}
			r.answerHTTP(w, &rec, badGateway(pool.Route()))
			return
		}
		defer ep.End() // also when an aborted body panics out
		r.respondHTTP(w, resp, ep, &rec)
		return
	}
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (r *Router) answerHTTP(w http.ResponseWriter, rec *accesslog.Record, f *failure) {
	r.count(f)
	rec.Status = f.status
	rec.BytesSent = int64(len(f.msg))
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Kiln-Router-Error", strconv.Itoa(f.status))
	w.WriteHeader(f.status)
	_, _ = io.WriteString(w, f.msg)
}

// outboundHTTP builds the request sent to backends: same method, URI, Host
// and body, hop-by-hop headers removed, forwarding headers set.
func (r *Router) outboundHTTP(req *http.Request) *http.Request {
	out := req.WithContext(req.Context()) // shallow copy
	u := *req.URL
	u.Scheme, u.Host = "http", ""
	out.URL = &u
	out.RequestURI = ""
	out.Close = false
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	upgrade := upgradeType(req.Header)
	trailers := wantsTrailers(req.Header.Get("Te"))
	removeHopHeaders(out.Header)
	if trailers {
		out.Header.Set("Te", "trailers") // end to end in practice (gRPC needs it)
	}
	if upgrade != "" {
		out.Header.Set("Connection", "Upgrade")
		out.Header.Set("Upgrade", upgrade)
	}
	if req.ContentLength == 0 {
		out.Body = nil
	}
	h := out.Header
	if ip, _, err := net.SplitHostPort(req.RemoteAddr); err == nil {
		if prior := h.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	}
	if h.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if req.TLS != nil {
			proto = "https"
		}
		h.Set("X-Forwarded-Proto", proto)
	}
	if h.Get(RequestStartHeader) == "" {
		h.Set(RequestStartHeader, strconv.FormatInt(time.Now().UnixMilli(), 10))
	}
	if h.Get(RequestIDHeader) == "" {
		h.Set(RequestIDHeader, string(r.ids.appendUUID(nil)))
	}
	return out
}

func wantsTrailers(te string) bool {
	for _, tok := range strings.Split(te, ",") {
		if strings.EqualFold(strings.TrimSpace(tok), "trailers") {
			return true
		}
	}
	return false
}

func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

func (r *Router) respondHTTP(w http.ResponseWriter, resp *http.Response, ep *table.Endpoint, rec *accesslog.Record) {
	defer resp.Body.Close()
	rec.Status = resp.StatusCode
	if resp.StatusCode == http.StatusSwitchingProtocols {
		r.tunnelHTTP(w, resp, rec)
		return
	}
	removeHopHeaders(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	for _, c := range resp.Header["Set-Cookie"] {
		if v, ok := stickyCookie(c, r.cfg.StickyCookie, ep.PrivateInstanceID); ok {
			h.Add("Set-Cookie", v)
			break
		}
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		h.Set("Trailer", strings.Join(names, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	// Flush each chunk of a body of unknown length (event streams, long
	// polls); buffer known-length bodies as net/http does.
	flush := resp.ContentLength < 0
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rec.BytesSent += int64(n)
			if flush {
				_ = rc.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				r.metrics.backendErrors.Add(1)
				r.log.Warn("backend-body-failed", "addr", ep.Addr, "err", err)
				panic(http.ErrAbortHandler) // tell the client the body is incomplete
			}
			break
		}
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
}

// tunnelHTTP completes a protocol upgrade (WebSocket and others): it hands
// the client the backend's 101 response, then copies bytes both ways until
// either side closes.
func (r *Router) tunnelHTTP(w http.ResponseWriter, resp *http.Response, rec *accesslog.Record) {
	backend, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		rec.Status = http.StatusBadGateway
		r.answerHTTP(w, rec, &failure{502, "502 Bad Gateway: backend upgrade failed.\n"})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		r.answerHTTP(w, rec, &failure{500, "500 Internal Server Error: cannot upgrade this connection.\n"})
		return
	}
	defer conn.Close()
	upgrade := upgradeType(resp.Header)
	removeHopHeaders(resp.Header)
	resp.Header.Set("Connection", "Upgrade")
	resp.Header.Set("Upgrade", upgrade)
	if _, err := io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return
	}
	if resp.Header.Write(brw) != nil || func() error { _, err := brw.WriteString("\r\n"); return err }() != nil || brw.Flush() != nil {
		return
	}
	rec.BytesSent = r.splice(conn, brw.Reader, backend)
}

// splice copies client→backend and backend→client until one direction
// ends, then closes both so the other ends too, and returns the bytes sent
// to the client. Connections are tracked so Shutdown can close them.
func (r *Router) splice(client net.Conn, clientR *bufio.Reader, backend io.ReadWriteCloser) int64 {
	stop := r.track(client, backend)
	defer stop()
	type result struct {
		n    int64
		down bool
	}
	done := make(chan result, 2)
	go func() {
		var src io.Reader = client
		if clientR != nil {
			src = clientR
		}
		n, _ := io.Copy(backend, src)
		done <- result{n, false}
	}()
	go func() {
		n, _ := io.Copy(client, backend)
		done <- result{n, true}
	}()
	first := <-done
	_ = client.Close()
	_ = backend.Close()
	second := <-done
	if first.down {
		return first.n
	}
	return second.n
}

// tunnels tracks upgraded connections so they can be closed at shutdown.
type tunnels struct {
	mu    sync.Mutex
	conns map[io.Closer]struct{}
}

func (r *Router) track(cs ...io.Closer) (untrack func()) {
	r.tun.mu.Lock()
	if r.tun.conns == nil {
		r.tun.conns = map[io.Closer]struct{}{}
	}
	for _, c := range cs {
		r.tun.conns[c] = struct{}{}
	}
	r.tun.mu.Unlock()
	return func() {
		r.tun.mu.Lock()
		for _, c := range cs {
			delete(r.tun.conns, c)
		}
		r.tun.mu.Unlock()
	}
}

// CloseTunnels closes every upgraded (WebSocket) connection in progress.
// Serve calls it when its context ends; embedders of Handler call it after
// shutting their server down, since http.Server.Shutdown leaves hijacked
// connections alone.
func (r *Router) CloseTunnels() {
	r.tun.mu.Lock()
	defer r.tun.mu.Unlock()
	for c := range r.tun.conns {
		_ = c.Close()
	}
}

// idempotent reports whether a request with this method may be sent again
// after a failure that happened once it was (maybe) received.
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
