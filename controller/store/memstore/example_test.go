package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
)

// A controller creates an app, then two requests race to update the revision
// they both read: the second gets ErrConflict (an HTTP 409) and must re-read.
func Example() {
	ctx := context.Background()
	s, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	app, err := s.CreateApp(ctx, store.App{
		Name: "web", Owner: "dev@example.com", State: store.AppStopped,
		Instances: 1, MemoryMB: 256, URIs: []string{"web.example.com"},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("created revision", app.Revision, app.PackageState)

	first, second := app, app
	first.State = store.AppStarted
	if first, err = s.UpdateApp(ctx, first); err != nil {
		panic(err)
	}
	fmt.Println("started revision", first.Revision)

	second.Instances = 3
	_, err = s.UpdateApp(ctx, second)
	fmt.Println("stale update conflicts:", errors.Is(err, store.ErrConflict))

	_, err = s.CreateApp(ctx, store.App{Name: "other", Owner: "eve@example.com", State: store.AppStopped, URIs: []string{"web.example.com"}})
	fmt.Println("uri taken:", errors.Is(err, store.ErrURITaken))

	page, err := s.DesiredStates(ctx, store.ListOptions{Limit: 100})
	if err != nil {
		panic(err)
	}
	for _, d := range page.Items {
		fmt.Println("desired:", d.Name, d.State, d.Instances)
	}
	// Output:
	// created revision 1 PENDING
	// started revision 2
	// stale update conflicts: true
	// uri taken: true
	// desired: web STARTED 1
}
