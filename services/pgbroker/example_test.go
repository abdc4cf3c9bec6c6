package pgbroker_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/pgbroker"
)

// The names a broker gives an instance's database and roles are derived
// from the ids alone, so an operator can find them. New does not connect.
func Example() {
	b, err := pgbroker.New(pgbroker.Config{AdminURL: "postgres://postgres:secret@127.0.0.1:5432/postgres?sslmode=disable"})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	id := "3f2a9c1e-0b6d-4e8f-a1c2-7d9e0f1a2b3c"
	fmt.Println(b.DatabaseName(id))
	fmt.Println(b.OwnerRole(id))
	fmt.Println(b.BindingRole("9d1c0b7a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"))
	// Output:
	// kiln_db_3f2a9c1e_0b6d_4e8f_a1c2_ad443513ed
	// kiln_own_3f2a9c1e_0b6d_4e8f_a1c2_ad443513ed
	// kiln_bind_9d1c0b7a_5e4f_4a3b_8c2d_9ddbe81bd0
}

// Provision a database and bind an app to it on the server named by
// KILN_TEST_POSTGRES_URL (compiled, not run: it needs a real server).
func Example_bind() {
	b, err := pgbroker.New(pgbroker.Config{AdminURL: os.Getenv("KILN_TEST_POSTGRES_URL")})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: "inst-1", ServiceID: "kiln-postgresql", PlanID: "kiln-postgresql-shared"}); err != nil {
		panic(err)
	}
	bnd, err := b.Bind(ctx, services.BindRequest{InstanceID: "inst-1", BindingID: "bind-1", ServiceID: "kiln-postgresql", PlanID: "kiln-postgresql-shared"})
	if err != nil {
		panic(err)
	}
	fmt.Println(bnd.Credentials["uri"]) // postgres://kiln_bind_...:<password>@127.0.0.1:5432/kiln_db_...
}
