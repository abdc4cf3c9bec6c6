package services_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
)

// Provision asynchronously, wait for the operation, bind, and hand the
// credentials to an app as VCAP_SERVICES.
func Example() {
	ctx := context.Background()
	broker, _ := membroker.New(membroker.Config{Async: true, AsyncPolls: 2})

	res, err := broker.Provision(ctx, services.ProvisionRequest{
		InstanceID: "inst-1", ServiceID: "kiln-memory-service", PlanID: "kiln-memory-free", AcceptsIncomplete: true,
	})
	if err != nil {
		panic(err)
	}
	op, err := services.WaitForOperation(ctx, broker, services.LastOperationRequest{
		InstanceID: "inst-1", Operation: res.Operation,
	}, time.Millisecond)
	if err != nil {
		panic(err)
	}
	fmt.Println("provision:", op.State)

	b, err := broker.Bind(ctx, services.BindRequest{
		InstanceID: "inst-1", BindingID: "bind-1", ServiceID: "kiln-memory-service", PlanID: "kiln-memory-free",
	})
	if err != nil {
		panic(err)
	}
	env, _ := json.Marshal(services.VCAPServices([]services.Credential{{
		Name: "cache", Label: "memory", Plan: "free", Credentials: map[string]any{"username": b.Credentials["username"]},
	}}))
	fmt.Println("VCAP_SERVICES=" + string(env))
	// Output:
	// provision: succeeded
	// VCAP_SERVICES={"memory":[{"name":"cache","label":"memory","plan":"free","tags":[],"credentials":{"username":"bind-1"}}]}
}
