package controller_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/store/memstore"
)

// A package uploaded two hours ago that no app refers to is collected; one
// uploaded a minute ago is spared by the grace period.
func ExampleController_CollectGarbage() {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	uploaded := now
	blobs, _ := memblob.New(memblob.Config{Now: func() time.Time { return uploaded }})
	uploaded = now.Add(-2 * time.Hour)
	_, _ = blobs.Add(ctx, blobstore.KindPackage, strings.NewReader("abandoned bits"))
	uploaded = now.Add(-time.Minute)
	_, _ = blobs.Add(ctx, blobstore.KindPackage, strings.NewReader("bits being pushed"))

	cfg := controller.DefaultConfig()
	cfg.ExternalURL = "http://127.0.0.1:9022"
	cfg.GCGrace = time.Hour
	st, _ := memstore.New(memstore.DefaultConfig())
	c, err := controller.New(cfg, controller.Deps{Bus: membus.New(), Store: st, Blobs: blobs, Stager: noStager{},
		Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	stats, err := c.CollectGarbage(ctx)
	fmt.Println(stats.Scanned, stats.Young, stats.Collected[blobstore.KindPackage], stats.CollectedBytes, err)
	// Output: 2 1 1 14 <nil>
}
