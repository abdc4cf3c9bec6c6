package controller_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/staging"
)

// noStager refuses to stage; the example never uploads bits.
type noStager struct{}

func (noStager) Stage(context.Context, staging.Request) (staging.Result, error) {
	return staging.Result{}, staging.ErrNoBuildpack
}

func Example() {
	srv := httptest.NewUnstartedServer(nil)
	defer srv.Close()
	cfg := controller.DefaultConfig()
	cfg.ExternalURL = "http://" + srv.Listener.Addr().String()
	cfg.BcryptCost = bcrypt.MinCost
	st, _ := memstore.New(memstore.DefaultConfig())
	blobs, _ := memblob.New(memblob.DefaultConfig())
	c, err := controller.New(cfg, controller.Deps{Bus: membus.New(), Store: st, Blobs: blobs, Stager: noStager{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Config.Handler = c.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cl, _ := client.New(srv.URL, nil)
	_ = cl.Register(ctx, "me@example.com", "secret")
	_, _ = cl.Login(ctx, "me@example.com", "secret")
	_ = cl.CreateApp(ctx, client.AppRequest{Name: "hello", Framework: "node", URIs: []string{"hello.vcap.me"}, Instances: 1, Memory: 128})
	a, err := cl.App(ctx, "hello")
	fmt.Println(a.Name, a.State, a.Staging.Model, a.Staging.Stack, a.URIs, a.Resources.Memory, err)
	// Output: hello STOPPED node node [hello.vcap.me] 128 <nil>
}
