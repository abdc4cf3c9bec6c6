package kerneltest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/kerneltest"
)

func TestNewRejects(t *testing.T) {
	ctx := context.Background()
	if k, err := kerneltest.New(ctx, kerneltest.WithDEAs(0)); err == nil {
		k.Close()
		t.Fatal("WithDEAs(0) accepted")
	}
}

// TestTwoDEAs checks that WithDEAs runs several DEAs and that placement
// spreads an app's instances over them.
func TestTwoDEAs(t *testing.T) {
	t.Parallel()
	tuned := false
	k := kerneltest.Start(t, kerneltest.WithDEAs(2), kerneltest.WithDomain("two.test"),
		kerneltest.WithConfig(func(c *kerneltest.Configs) { tuned = true }))
	if !tuned || len(k.DEAs) != 2 || k.AppHost("x") != "x.two.test" {
		t.Fatalf("tuned %v, %d DEAs, host %s", tuned, len(k.DEAs), k.AppHost("x"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// One instance first: the second one's placement then sees where the
	// first runs (two placed at once may both win on the idler DEA).
	if err := k.Push(ctx, "spread", "testdata/hello", 1); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.Scale(ctx, "spread", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.WaitRunning(ctx, "spread", 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cs, err := k.Backend.Containers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	deas := map[string]bool{}
	for _, c := range cs {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deas[info.Properties[dea.PropertyDEA]] = true
	}
	if len(cs) != 2 || len(deas) != 2 {
		t.Errorf("%d containers on DEAs %v, want one on each of 2", len(cs), deas)
	}
}

// TestUsersAndErrors covers NewUser and the failures of Push and
// WaitServing.
func TestUsersAndErrors(t *testing.T) {
	t.Parallel()
	k := kerneltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := k.NewUser(ctx, "user@example.com", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.NewUser(ctx, "user@example.com", "pw"); err == nil {
		t.Error("registering a user twice succeeded")
	}
	info, err := u.Info(ctx)
	if err != nil || info.User != "user@example.com" {
		t.Fatalf("info = %+v, %v", info, err)
	}
	if err := k.PushAs(ctx, u, "bad name!", "testdata/hello", 1); err == nil {
		t.Error("pushing an invalid app name succeeded")
	}
	var apiErr *client.Error
	if err := k.PushAs(ctx, u, "missing", "does-not-exist", 1); err == nil || errors.As(err, &apiErr) {
		t.Errorf("push of a missing dir: %v, want a local error", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	if _, err := k.WaitServing(sctx, k.AppHost("nobody"), "/"); !errors.Is(err, kerneltest.ErrNotServing) {
		t.Errorf("WaitServing of an unknown host: %v, want ErrNotServing", err)
	}
	if st, _, err := k.Get(k.AppHost("nobody"), "/"); err != nil || st != http.StatusNotFound {
		t.Errorf("unknown host = %d %v, want 404", st, err)
	}
}
