package osb_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/services/osb"
)

// Serve a broker over the OSB API and use it through the OSB client, as a
// controller would use any broker registered by URL.
func Example() {
	mem, _ := membroker.New(membroker.DefaultConfig())
	srv, err := osb.NewServer(mem, osb.Config{Username: "admin", Password: "secret"})
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	client, err := osb.NewClient(osb.Config{URL: ts.URL, Username: "admin", Password: "secret"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	cat, err := client.Catalog(ctx)
	if err != nil {
		panic(err)
	}
	svc := cat.Services[0]
	fmt.Println("service:", svc.Name, "plan:", svc.Plans[0].Name)

	req := services.ProvisionRequest{InstanceID: "inst-1", ServiceID: svc.ID, PlanID: svc.Plans[0].ID}
	if _, err := client.Provision(ctx, req); err != nil {
		panic(err)
	}
	req.PlanID = "no-such-plan"
	_, err = client.Provision(ctx, req)
	var oe *osb.Error
	fmt.Println("bad request:", errors.Is(err, services.ErrBadRequest), errors.As(err, &oe) && oe.StatusCode == 400)

	b, err := client.Bind(ctx, services.BindRequest{InstanceID: "inst-1", BindingID: "bind-1", ServiceID: svc.ID, PlanID: svc.Plans[0].ID})
	if err != nil {
		panic(err)
	}
	fmt.Println("bound as:", b.Credentials["username"])
	// Output:
	// service: memory plan: free
	// bad request: true true
	// bound as: bind-1
}
