package sqlstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/sqlstore"
)

// Open an embedded SQLite store in a file, write and read back an app. For
// PostgreSQL set Driver to sqlstore.Postgres and DSN to a connection URL.
func Example() {
	dir, err := os.MkdirTemp("", "kiln-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cfg := sqlstore.DefaultConfig(filepath.Join(dir, "controller.db"))
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := sqlstore.Open(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	defer s.Close()

	ctx := context.Background()
	a, err := s.CreateApp(ctx, store.App{Name: "web", Owner: "dev@example.com", State: store.AppStarted, Instances: 2})
	if err != nil {
		panic(err)
	}
	got, err := s.GetAppByName(ctx, "dev@example.com", "web")
	if err != nil {
		panic(err)
	}
	fmt.Println(got.ID == a.ID, got.Instances, got.Revision, "schema", sqlstore.SchemaVersion())
	// Output: true 2 1 schema 1
}
