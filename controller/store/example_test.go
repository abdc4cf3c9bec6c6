package store_test

import (
	"context"
	"fmt"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
)

// Page through every app: pass each page's Next back as the cursor until it
// is empty.
func ExamplePage() {
	ctx := context.Background()
	s, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if _, err := s.CreateApp(ctx, store.App{ID: "id-" + name, Name: name, Owner: "dev@x", State: store.AppStopped}); err != nil {
			panic(err)
		}
	}
	opts := store.ListOptions{Limit: 2}
	for {
		page, err := s.ListApps(ctx, "dev@x", opts)
		if err != nil {
			panic(err)
		}
		for _, a := range page.Items {
			fmt.Print(a.Name, " ")
		}
		fmt.Println("| next:", page.Next)
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	// Output:
	// a b | next: id-b
	// c d | next: id-d
	// e | next:
}
