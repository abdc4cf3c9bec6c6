package router_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/router"
)

// A router on an in-process bus proxies to an app instance that registered
// itself with router.register.
func Example() {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the app, via %s\n", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer app.Close()

	srv := membus.NewServer(membus.DefaultConfig())
	defer srv.Close()
	r, err := router.New(router.DefaultConfig(), router.Deps{Bus: srv.Connect()})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go r.Serve(ctx, ln)

	// What a DEA publishes once its instance listens.
	host, port, _ := net.SplitHostPort(app.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	msg, _ := json.Marshal(protocol.Register{Host: host, Port: p, URIs: []string{"hello.example.com"}, App: "app-1", PrivateInstanceID: "inst-1"})
	dea := srv.Connect()
	for r.Table().Lookup("hello.example.com", "/") == nil {
		_ = dea.Publish(protocol.RouterRegister, msg)
		time.Sleep(10 * time.Millisecond)
	}

	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
	req.Host = "hello.example.com"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 hello from the app, via http
}
