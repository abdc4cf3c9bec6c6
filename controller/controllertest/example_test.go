package controllertest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

// A test starts a fake DEA (with StartDEA, given its t) next to the
// controller under test, then checks what the controller asked of it.
func ExampleNewDEA() {
	mb := membus.NewServer(membus.DefaultConfig())
	defer mb.Close()
	dea, err := controllertest.NewDEA(mb.Connect(), controllertest.DefaultDEAConfig())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dea.Close()

	// The controller under test would send this.
	ctl := mb.Connect()
	_ = bus.PublishJSON(ctl, protocol.DEAStop, protocol.Stop{Droplet: "app-1", Indices: []int{2}})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, ok := dea.WaitFor(ctx, func(s controllertest.Snapshot) bool { return len(s.Stops) == 1 })
	fmt.Println(ok, snap.Stops[0].Droplet, snap.Stops[0].Indices)
	// Output: true app-1 [2]
}
