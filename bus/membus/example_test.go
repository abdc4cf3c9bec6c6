package membus_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
)

// Two components share one in-process bus, each through its own
// connection: a DEA answering discovery requests and a controller asking.
func Example() {
	srv := membus.NewServer(membus.DefaultConfig())
	defer srv.Close()
	dea, controller := srv.Connect(), srv.Connect()

	if _, err := dea.Subscribe("dea.discover", func(m *bus.Msg) {
		_ = dea.Publish(m.Reply, []byte("dea-1 can run "+string(m.Data)))
	}); err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reply, err := controller.Request(ctx, "dea.discover", []byte("web/0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(reply.Data))

	_, err = controller.Request(ctx, "stager.discover", nil)
	fmt.Println(err)
	// Output:
	// dea-1 can run web/0
	// membus: request stager.discover: bus: no responders
}

// A test takes the bus down and brings it back to check how a component
// copes; the component learns of it through Stats or OnConnectionChange.
func ExampleServer_SetConnected() {
	srv := membus.NewServer(membus.DefaultConfig())
	defer srv.Close()
	router := srv.Connect()

	var mu sync.Mutex
	var seen []bool
	router.OnConnectionChange(func(up bool) {
		mu.Lock()
		seen = append(seen, up)
		mu.Unlock()
	})

	srv.SetConnected(false)
	fmt.Println("connected:", router.Stats().Connected)
	srv.SetConnected(true)
	fmt.Println("connected:", router.Stats().Connected, "reconnects:", router.Stats().Reconnects)

	mu.Lock()
	fmt.Println("hook saw:", seen)
	mu.Unlock()
	// Output:
	// connected: false
	// connected: true reconnects: 1
	// hook saw: [false true]
}
