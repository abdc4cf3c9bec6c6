package router

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// BenchmarkServeFast measures one proxied GET through the Serve path's
// handler (lookup, headers, backend keep-alive round trip, response
// relay) against a fasthttp backend on loopback, without the client-side
// socket: it shows the router's own CPU and allocations per request.
func BenchmarkServeFast(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	be := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("Hello, World!") }}
	go be.Serve(ln)
	b.Cleanup(func() { be.Shutdown() })
	r, err := New(DefaultConfig(), Deps{Bus: membus.New()})
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if err := r.Register(&protocol.Register{Host: "127.0.0.1", Port: addr.Port, URIs: []string{"app.example.com"}, PrivateInstanceID: "i"}); err != nil {
		b.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		var req fasthttp.Request
		req.Header.SetHost("app.example.com")
		req.SetRequestURI("/")
		ctx.Init(&req, remote, nil)
		r.serveFast(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d", ctx.Response.StatusCode())
		}
		ctx.Response.Reset() // closes the body stream, releasing the backend connection
	}
}
