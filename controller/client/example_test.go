package client_test

import (
	"context"
	"errors"
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

type noStager struct{}

func (noStager) Stage(context.Context, staging.Request) (staging.Result, error) {
	return staging.Result{}, staging.ErrNoBuildpack
}

// startController runs a controller on in-memory parts behind an httptest
// server and returns its URL and a stop function.
func startController() (string, func()) {
	srv := httptest.NewUnstartedServer(nil)
	cfg := controller.DefaultConfig()
	cfg.ExternalURL = "http://" + srv.Listener.Addr().String()
	cfg.BcryptCost = bcrypt.MinCost
	st, _ := memstore.New(memstore.DefaultConfig())
	blobs, _ := memblob.New(memblob.DefaultConfig())
	c, _ := controller.New(cfg, controller.Deps{Bus: membus.New(), Store: st, Blobs: blobs, Stager: noStager{}})
	srv.Config.Handler = c.Handler()
	srv.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return srv.URL, func() { cancel(); <-done; srv.Close() }
}

func ExampleClient() {
	url, stop := startController()
	defer stop()
	ctx := context.Background()
	cl, _ := client.New(url, nil)
	_ = cl.Register(ctx, "me@example.com", "secret")
	if _, err := cl.Login(ctx, "me@example.com", "wrong"); err != nil {
		var e *client.Error
		errors.As(err, &e)
		fmt.Println(e.Status, e.Code, e.Description)
	}
	_, _ = cl.Login(ctx, "me@example.com", "secret")
	info, _ := cl.Info(ctx)
	fmt.Println(info.User, info.Limits.Memory, info.Usage.Apps)
	// Output:
	// 403 200 Operation not permitted
	// me@example.com 2048 0
}
