package dea_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden/fake"
)

// staticFetcher serves one droplet from memory.
type staticFetcher []byte

func (f staticFetcher) Fetch(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(f)), nil
}

// Run a DEA on an in-process bus and the fake container backend, place an
// instance the way a controller does (discover, then start), and watch it
// come up and register its route.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := membus.New()
	defer b.Close()
	backend, _ := fake.New(fake.DefaultConfig())
	defer backend.Close()

	// A droplet as staging makes it.
	app, _ := os.MkdirTemp("", "app")
	defer os.RemoveAll(app)
	_ = os.WriteFile(app+"/server", []byte("#!/bin/sh\n"), 0o755)
	var drop bytes.Buffer
	sum, _ := droplet.PackDir(&drop, droplet.Info{StartCommand: "./server", Stack: "linux"}, app)

	base, _ := os.MkdirTemp("", "dea")
	defer os.RemoveAll(base)
	cfg := dea.DefaultConfig()
	cfg.BaseDir = base
	d, err := dea.New(cfg, dea.Deps{Bus: b, Backend: backend, Fetcher: staticFetcher(drop.Bytes())})
	if err != nil {
		fmt.Println(err)
		return
	}
	routes := make(chan protocol.Register, 1)
	_, _ = b.Subscribe(protocol.RouterRegister, func(m *bus.Msg) {
		var r protocol.Register
		_ = json.Unmarshal(m.Data, &r)
		routes <- r
	})
	hello := make(chan struct{}, 1)
	_, _ = b.Subscribe(protocol.DEAHelloSubject, func(*bus.Msg) { hello <- struct{}{} })
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-hello

	// Controller side: discover, then start on the DEA that answered.
	var reply protocol.DEAHello
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	err = bus.RequestJSON(rctx, b, protocol.DEADiscover,
		protocol.Discover{Droplet: "blog", Limits: protocol.Limits{Mem: 256}}, &reply)
	fmt.Println("discover answered by this DEA:", err == nil && reply.ID == d.ID())
	_ = bus.PublishJSON(b, protocol.DEAStartSubject(reply.ID), protocol.Start{
		Droplet: "blog", Name: "blog", URIs: []string{"blog.example.com"}, SHA1: sum.SHA1,
		ExecutableURI: "http://controller/droplets/blog", Version: "v1", Limits: protocol.Limits{Mem: 256},
	})
	r := <-routes
	fmt.Println("route:", r.URIs[0], "index", r.PrivateInstanceIndex, "on", r.Host)

	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// discover answered by this DEA: true
	// route: blog.example.com index 0 on 127.0.0.1
	// run: <nil>
}

// A ProcStatCPU samples the aggregate cpu line of /proc/stat (here a file
// written by the example) at each call and smooths the busy share of the
// time in between. A DEA calls it once per advertise interval; pass it, or
// any CPUSampler, in Deps.CPU.
func ExampleProcStatCPU() {
	dir, _ := os.MkdirTemp("", "stat")
	defer os.RemoveAll(dir)
	stat := dir + "/stat"
	p := &dea.ProcStatCPU{Path: stat, Smoothing: 0.5}
	// Cumulative ticks: user nice system idle iowait irq softirq steal.
	for _, line := range []string{
		"cpu  100 0 100 700 100 0 0 0", // since boot: 20 % busy
		"cpu  200 0 200 700 100 0 0 0", // then 200 busy ticks of 200
		"cpu  200 0 200 900 100 0 0 0", // then 200 idle ticks of 200
	} {
		_ = os.WriteFile(stat, []byte(line+"\n"), 0o644)
		v, err := p.Sample()
		fmt.Printf("%.2f %v\n", v, err)
	}
	// Output:
	// 0.20 <nil>
	// 0.60 <nil>
	// 0.30 <nil>
}
