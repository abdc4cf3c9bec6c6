package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/router/accesslog"
	"github.com/kiln-paas/kiln/router/table"
)

// Serve proxies HTTP/1.1 requests arriving on ln until ctx ends, then stops
// accepting, lets requests in flight finish (bounded by ShutdownTimeout),
// closes upgraded connections and returns nil. With Config.TLS set it
// terminates TLS on ln.
//
// Serve is the fast path. It is built on fasthttp, which reuses request
// and response objects and buffers across requests, so a proxied request
// allocates nearly nothing; net/http's server and Transport allocate tens
// of objects per request, which on loopback costs several times the CPU.
// Bodies stream both ways (request bodies are read as the backend consumes
// them; response bodies larger than a small buffer are copied as they
// arrive), upgrades are spliced after hijacking the connection, and
// backend connections are kept alive per endpoint.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	// Idle timeouts apply to the TCP connection, under TLS if any, so
	// fasthttp still sees the *tls.Conn it recognises.
	ln = idleListener{ln, r.cfg.ClientIdleTimeout}
	if r.cfg.TLS != nil {
		tc := r.cfg.TLS.Clone()
		tc.NextProtos = []string{"http/1.1"} // this server speaks HTTP/1.1 only
		ln = tls.NewListener(ln, tc)
	}
	srv := &fasthttp.Server{
		Handler:                       r.serveFast,
		Name:                          "kiln-router",
		StreamRequestBody:             true,
		DisablePreParseMultipartForm:  true,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		ReadBufferSize:                r.cfg.MaxHeaderBytes,
		WriteBufferSize:               16 << 10,
		MaxRequestBodySize:            fastBodyBuffer,
		// Timeouts are enforced per read and write by idleListener, so
		// a long upload or download that keeps moving is never cut off.
		CloseOnShutdown: true,
		Logger:          fastLogger{r},
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := srv.Serve(ln)
		if gctx.Err() != nil {
			return nil
		}
		return err
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownTimeout)
		defer cancel()
		err := srv.ShutdownWithContext(sctx)
		r.CloseTunnels()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return nil
	})
	return g.Wait()
}

// fastBodyBuffer is how much of a body fasthttp may hold in memory before
// streaming it: small bodies are forwarded in one write, larger ones flow.
const fastBodyBuffer = 64 << 10

type fastLogger struct{ r *Router }

func (l fastLogger) Printf(format string, args ...any) {
	l.r.log.Debug("http-server", "msg", format, "args", args)
}

// fastBackend is the keep-alive connection pool to one endpoint address.
type fastBackend struct{ hc *fasthttp.HostClient }

func (b *fastBackend) close() { b.hc.CloseIdleConnections() }

func (r *Router) backendFor(addr string) *fastBackend {
	if v, ok := r.backends.Load(addr); ok {
		return v.(*fastBackend)
	}
	b := &fastBackend{hc: &fasthttp.HostClient{
		Addr:                          addr,
		Dial:                          r.fastDial,
		MaxConns:                      r.cfg.MaxIdleConnsPerBackend * 4,
		MaxIdleConnDuration:           90 * time.Second,
		MaxConnWaitTimeout:            r.cfg.DialTimeout,
		StreamResponseBody:            true,
		MaxResponseBodySize:           fastBodyBuffer,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultUserAgentHeader:      true,
		MaxIdemponentCallAttempts:     2, // one retry on a stale keep-alive connection
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
	}}
	v, _ := r.backends.LoadOrStore(addr, b)
	return v.(*fastBackend)
}

// dialError marks a failure to connect: nothing was sent, so any request
// may be retried on another endpoint.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func (r *Router) fastDial(addr string) (net.Conn, error) {
	c, err := r.dialer().Dial("tcp", addr)
	if err != nil {
		return nil, &dialError{err}
	}
	return newIdleConn(c, r.cfg.BackendIdleTimeout), nil
}

func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

var fastBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func (r *Router) serveFast(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	req := &ctx.Request
	host := b2s(req.Header.Host())
	pool, fail := r.lookup(host, b2s(ctx.Path()), r.clock.Now)
	if fail != nil {
		r.answerFast(ctx, start, fail)
		return
	}
	bp := fastBufs.Get().(*[]byte)
	defer fastBufs.Put(bp)
	r.forwardHeadersFast(ctx, bp)
	sticky := b2s(req.Header.Cookie(VCAPCookie))
	instance := b2s(req.Header.Peek(InstanceHeader))
	if ctx.IsTLS() {
		req.URI().SetScheme("http")
	}
	upgrade := req.Header.ConnectionUpgrade()
	clientClose := req.Header.ConnectionClose()
	removeHopFast(&req.Header, upgrade)

	var triedBuf [maxAttempts]*table.Endpoint
	tried := triedBuf[:0]
	for {
		ep, fail := r.choose(pool, instance, sticky, time.Now().UnixNano(), tried)
		if fail == nil && len(tried) >= r.cfg.MaxAttempts {
			fail = badGateway(pool.Route())
		}
		if fail != nil {
			r.answerFast(ctx, start, fail)
			return
		}
		tried = append(tried, ep)
		if upgrade {
			if r.upgradeFast(ctx, ep, start) {
				return
			}
			continue
		}
		bresp := fasthttp.AcquireResponse()
		ep.Begin()
		err := r.backendFor(ep.Addr).hc.Do(req, bresp)
		if err != nil {
			ep.End()
			fasthttp.ReleaseResponse(bresp)
			r.metrics.backendErrors.Add(1)
			var de *dialError
			if errors.As(err, &de) || errors.Is(err, fasthttp.ErrNoFreeConns) {
				ep.MarkFailed(time.Now().Add(r.cfg.FailureBackoff))
				r.log.Warn("backend-failed", "addr", ep.Addr, "route", pool.Route(), "err", err)
				continue
			}
			if errors.Is(err, fasthttp.ErrBodyTooLarge) && idempotent(b2s(req.Header.Method())) && !req.IsBodyStream() && len(req.Body()) == 0 {
				// The backend delimited a large body by closing the
				// connection, which fasthttp's client cannot stream.
				// Send the request again through net/http, which can.
				if err = r.relayHTTP(ctx, ep, start, clientClose); err == nil {
					return
				}
			}
			r.log.Warn("backend-failed", "addr", ep.Addr, "route", pool.Route(), "err", err)
			r.answerFast(ctx, start, badGateway(pool.Route()))
			return
		}
		r.respondFast(ctx, bresp, ep, start, clientClose)
		return
	}
}

// forwardHeadersFast sets X-Forwarded-For, X-Forwarded-Proto,
// X-Request-Start and X-Vcap-Request-Id on the request, in place.
func (r *Router) forwardHeadersFast(ctx *fasthttp.RequestCtx, bp *[]byte) {
	h := &ctx.Request.Header
	buf := (*bp)[:0]
	if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
		buf = append(append(buf, prior...), ", "...)
	}
	buf = appendRemoteIP(buf, ctx.RemoteAddr())
	h.SetBytesV("X-Forwarded-For", buf)
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		if ctx.IsTLS() {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if len(h.Peek(RequestStartHeader)) == 0 {
		buf = strconv.AppendInt(buf[:0], time.Now().UnixMilli(), 10)
		h.SetBytesV(RequestStartHeader, buf)
	}
	if len(h.Peek(RequestIDHeader)) == 0 {
		buf = r.ids.appendUUID(buf[:0])
		h.SetBytesV(RequestIDHeader, buf)
	}
	*bp = buf
}

func appendRemoteIP(dst []byte, a net.Addr) []byte {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap().AppendTo(dst)
		}
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return append(dst, host...)
	}
	return dst
}

func removeHopFast(h *fasthttp.RequestHeader, upgrade bool) {
	var up []byte
	if upgrade {
		up = append(up, h.Peek("Upgrade")...)
	}
	if conn := h.Peek("Connection"); len(conn) > 0 {
		forEachToken(b2s(conn), func(tok string) {
			switch tok {
			case "close", "keep-alive", "Close", "Keep-Alive", "upgrade", "Upgrade":
			default:
				h.Del(tok)
			}
		})
	}
	h.Del("Connection")
	h.Del("Proxy-Connection")
	h.Del("Keep-Alive")
	h.Del("Proxy-Authenticate")
	h.Del("Proxy-Authorization")
	if te := h.Peek("Te"); len(te) > 0 {
		trailers := wantsTrailers(b2s(te))
		h.Del("Te")
		if trailers {
			h.Set("Te", "trailers") // end to end in practice (gRPC needs it)
		}
	}
	h.Del("Upgrade")
	if upgrade {
		h.Set("Connection", "Upgrade")
		h.SetBytesV("Upgrade", up)
	}
}

func forEachToken(s string, f func(string)) {
	for s != "" {
		var tok string
		tok, s, _ = cutByte(s, ',')
		for len(tok) > 0 && (tok[0] == ' ' || tok[0] == '\t') {
			tok = tok[1:]
		}
		for len(tok) > 0 && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
			tok = tok[:len(tok)-1]
		}
		if tok != "" {
			f(tok)
		}
	}
}

func cutByte(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func (r *Router) answerFast(ctx *fasthttp.RequestCtx, start time.Time, f *failure) {
	r.count(f)
	ctx.Response.Reset()
	ctx.SetStatusCode(f.status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.Response.Header.Set("X-Kiln-Router-Error", strconv.Itoa(f.status))
	ctx.SetBodyString(f.msg)
	d := time.Since(start)
	r.metrics.observe(f.status, d)
	if r.access != nil {
		rec := r.recordFast(ctx, start, nil)
		rec.Status, rec.BytesSent, rec.Duration = f.status, int64(len(f.msg)), d
		r.access.Log(&rec)
	}
}

// recordFast fills an access log record whose strings alias ctx's buffers;
// it must be logged before the handler returns or copied.
func (r *Router) recordFast(ctx *fasthttp.RequestCtx, start time.Time, ep *table.Endpoint) accesslog.Record {
	h := &ctx.Request.Header
	rec := accesslog.Record{
		Host: b2s(h.Host()), Start: start, Method: b2s(h.Method()), URI: b2s(h.RequestURI()), Proto: b2s(h.Protocol()),
		Referer: b2s(h.Referer()), UserAgent: b2s(h.UserAgent()), RemoteAddr: ctx.RemoteAddr().String(),
		XForwardedFor: b2s(h.Peek("X-Forwarded-For")), RequestID: b2s(h.Peek(RequestIDHeader)),
	}
	if ep != nil {
		rec.BackendAddr, rec.AppID = ep.Addr, ep.AppID
	}
	return rec
}

func (r *Router) respondFast(ctx *fasthttp.RequestCtx, bresp *fasthttp.Response, ep *table.Endpoint, start time.Time, clientClose bool) {
	resp := &ctx.Response
	bresp.Header.CopyTo(&resp.Header)
	resp.Header.ResetConnectionClose()
	if clientClose {
		ctx.SetConnectionClose()
	}
	resp.Header.Del("Keep-Alive")
	resp.Header.Del("Proxy-Authenticate")
	resp.Header.Del("Proxy-Connection")
	resp.Header.Del("Upgrade")
	if ep.PrivateInstanceID != "" {
		var add string
		bresp.Header.VisitAllCookie(func(_, value []byte) {
			if add == "" {
				add, _ = stickyCookie(b2s(value), r.cfg.StickyCookie, ep.PrivateInstanceID)
			}
		})
		if add != "" {
			var c fasthttp.Cookie
			if c.Parse(add) == nil {
				resp.Header.SetCookie(&c)
			}
		}
	}
	status := bresp.StatusCode()
	d := time.Since(start)
	r.metrics.observe(status, d)
	bs := bodyStreams.Get().(*bodyStream)
	bs.r, bs.ep, bs.resp, bs.src, bs.n = r, ep, bresp, bresp.BodyStream(), 0
	bs.done.Store(false)
	if r.access != nil {
		bs.rec = r.recordFast(ctx, start, ep)
		bs.rec.Status = status
		bs.arena = copyRecord(&bs.rec, bs.arena)
	}
	if bs.src == nil {
		bs.finish()
		return
	}
	resp.SetBodyStream(bs, bresp.Header.ContentLength())
}

// copyRecord moves rec's strings into one buffer so the record outlives the
// request's buffers (the body is written after the handler returns).
func copyRecord(rec *accesslog.Record, arena []byte) []byte {
	fields := []*string{&rec.Host, &rec.Method, &rec.URI, &rec.Proto, &rec.Referer, &rec.UserAgent, &rec.XForwardedFor, &rec.RequestID}
	n := 0
	for _, f := range fields {
		n += len(*f)
	}
	arena = arena[:0]
	if cap(arena) < n {
		arena = make([]byte, 0, n)
	}
	for _, f := range fields {
		i := len(arena)
		arena = append(arena, *f...)
		*f = b2s(arena[i:len(arena):len(arena)])
	}
	return arena
}

// bodyStream relays a backend response body to the client, counting bytes;
// when fasthttp closes it after writing, it releases the backend
// connection, the endpoint's in-flight count and logs the request.
type bodyStream struct {
	r     *Router
	ep    *table.Endpoint
	resp  *fasthttp.Response
	src   io.Reader
	n     int64
	rec   accesslog.Record
	arena []byte
	done  atomic.Bool
}

var bodyStreams = sync.Pool{New: func() any { return new(bodyStream) }}

func (b *bodyStream) Read(p []byte) (int, error) {
	n, err := b.src.Read(p)
	b.n += int64(n)
	return n, err
}

// Close implements io.Closer; fasthttp calls it once the body is written
// or the response discarded.
func (b *bodyStream) Close() error {
	b.finish()
	return nil
}

func (b *bodyStream) finish() {
	if b.done.Swap(true) {
		return
	}
	b.ep.End()
	_ = b.resp.CloseBodyStream() // returns the connection to its pool
	fasthttp.ReleaseResponse(b.resp)
	if b.r.access != nil {
		b.rec.BytesSent = b.n
		b.rec.Duration = time.Since(b.rec.Start)
		b.r.access.Log(&b.rec)
	}
	b.r, b.ep, b.resp, b.src = nil, nil, nil, nil
	bodyStreams.Put(b)
}

// upgradeFast proxies an upgrade request (WebSocket): it dials ep, sends
// the request head, reads the backend's status and hijacks the client
// connection to splice the two. It reports false when ep could not be
// dialled, so the caller tries another endpoint.
func (r *Router) upgradeFast(ctx *fasthttp.RequestCtx, ep *table.Endpoint, start time.Time) bool {
	bc, err := r.dialer().Dial("tcp", ep.Addr)
	if err != nil {
		r.metrics.backendErrors.Add(1)
		ep.MarkFailed(time.Now().Add(r.cfg.FailureBackoff))
		r.log.Warn("backend-failed", "addr", ep.Addr, "err", err)
		return false
	}
	br := bufio.NewReader(bc)
	status := 502
	_ = bc.SetDeadline(time.Now().Add(r.cfg.BackendIdleTimeout))
	if _, err := bc.Write(ctx.Request.Header.Header()); err == nil {
		if line, err := br.Peek(12); err == nil {
			status, _ = strconv.Atoi(string(line[9:12]))
		}
	}
	_ = bc.SetDeadline(time.Time{})
	d := time.Since(start)
	r.metrics.observe(status, d)
	if status == 502 {
		_ = bc.Close()
		r.metrics.backendErrors.Add(1)
		r.answerFast(ctx, start, badGateway(ep.Addr))
		return true
	}
	rec := r.recordFast(ctx, start, ep)
	rec.Status = status
	copyRecord(&rec, nil)
	ep.Begin()
	c := ctx.Conn()
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ic, ok := c.(*idleConn); ok {
		ic.disable() // a tunnel may idle as long as its peers like
	}
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer ep.End()
		rec.BytesSent = r.splice(c, nil, struct {
			io.Reader
			io.Writer
			io.Closer
		}{br, bc, bc})
		rec.Duration = time.Since(start)
		if r.access != nil {
			r.access.Log(&rec)
		}
	})
	return true
}

// idleListener wraps accepted connections in idleConn.
type idleListener struct {
	net.Listener
	timeout time.Duration
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newIdleConn(c, l.timeout), nil
}

// idleConn enforces an idle timeout: every Read and Write must make
// progress within timeout. Deadlines are pushed forward lazily (when an
// eighth of the timeout has passed), so a busy connection sets them rarely.
// Zero deadlines set by users are ignored; others pass through.
type idleConn struct {
	net.Conn
	timeout         time.Duration
	readDL, writeDL atomic.Int64
	off             atomic.Bool
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, timeout: timeout}
}

func (c *idleConn) push(dl *atomic.Int64, set func(time.Time) error) {
	if c.off.Load() {
		return
	}
	now := time.Now().UnixNano()
	want := now + int64(c.timeout)
	if want-dl.Load() > int64(c.timeout)/8 {
		dl.Store(want)
		_ = set(time.Unix(0, want))
	}
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.push(&c.readDL, c.Conn.SetReadDeadline)
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.push(&c.writeDL, c.Conn.SetWriteDeadline)
	return c.Conn.Write(p)
}

func (c *idleConn) disable() {
	c.off.Store(true)
	_ = c.Conn.SetDeadline(time.Time{})
}

func (c *idleConn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.readDL.Store(t.UnixNano())
	c.writeDL.Store(t.UnixNano())
	return c.Conn.SetDeadline(t)
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.readDL.Store(t.UnixNano())
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		return nil
	}
	c.writeDL.Store(t.UnixNano())
	return c.Conn.SetWriteDeadline(t)
}

// relayHTTP sends the request of ctx to ep through the net/http transport
// and relays the response as a stream. It serves the rare responses the
// fast client cannot stream (bodies delimited by connection close) and is
// only used for idempotent requests without a body.
func (r *Router) relayHTTP(ctx *fasthttp.RequestCtx, ep *table.Endpoint, start time.Time, clientClose bool) error {
	req := &ctx.Request
	out, err := http.NewRequestWithContext(context.Background(), string(req.Header.Method()),
		"http://"+ep.Addr+string(req.Header.RequestURI()), nil)
	if err != nil {
		return fmt.Errorf("router: relay: %w", err)
	}
	out.Host = string(req.Header.Host())
	req.Header.VisitAll(func(k, v []byte) {
		if string(k) != "Host" {
			out.Header.Add(string(k), string(v))
		}
	})
	ep.Begin()
	resp, err := r.httpTr.RoundTrip(out)
	if err != nil {
		ep.End()
		return fmt.Errorf("router: relay: %w", err)
	}
	removeHopHeaders(resp.Header)
	res := &ctx.Response
	res.Reset()
	res.SetStatusCode(resp.StatusCode)
	for k, vv := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		for _, v := range vv {
			res.Header.Add(k, v)
		}
	}
	for _, c := range resp.Header["Set-Cookie"] {
		if v, ok := stickyCookie(c, r.cfg.StickyCookie, ep.PrivateInstanceID); ok {
			res.Header.Add("Set-Cookie", v)
			break
		}
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
	r.metrics.observe(resp.StatusCode, time.Since(start))
	rb := &relayBody{rc: resp.Body, ep: ep, r: r}
	if r.access != nil {
		rb.rec = r.recordFast(ctx, start, ep)
		rb.rec.Status = resp.StatusCode
		copyRecord(&rb.rec, nil)
	}
	res.SetBodyStream(rb, int(resp.ContentLength))
	return nil
}

// relayBody is bodyStream for responses relayed through net/http.
type relayBody struct {
	r    *Router
	rc   io.ReadCloser
	ep   *table.Endpoint
	n    int64
	rec  accesslog.Record
	done atomic.Bool
}

func (b *relayBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

// Close implements io.Closer; fasthttp calls it after writing the body.
func (b *relayBody) Close() error {
	if b.done.Swap(true) {
		return nil
	}
	err := b.rc.Close()
	b.ep.End()
	if b.r.access != nil {
		b.rec.BytesSent = b.n
		b.rec.Duration = time.Since(b.rec.Start)
		b.r.access.Log(&b.rec)
	}
	return err
}
