package membroker_test

import (
	"context"
	"fmt"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
)

// A test double for a service: provision, bind, and check what the broker
// was asked.
func Example() {
	ctx := context.Background()
	b, err := membroker.New(membroker.DefaultConfig())
	if err != nil {
		panic(err)
	}
	if _, err := b.Provision(ctx, services.ProvisionRequest{
		InstanceID: "inst-1", ServiceID: "kiln-memory-service", PlanID: "kiln-memory-free",
	}); err != nil {
		panic(err)
	}
	bnd, err := b.Bind(ctx, services.BindRequest{
		InstanceID: "inst-1", BindingID: "bind-1", ServiceID: "kiln-memory-service", PlanID: "kiln-memory-free", AppID: "app-1",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("username:", bnd.Credentials["username"])
	for _, c := range b.Calls() {
		fmt.Printf("%s instance=%s binding=%q\n", c.Op, c.InstanceID, c.BindingID)
	}
	// Output:
	// username: bind-1
	// provision instance=inst-1 binding=""
	// bind instance=inst-1 binding="bind-1"
}
