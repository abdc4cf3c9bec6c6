package healthmgr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/healthmgr"
)

// A health manager on an in-process bus: a DEA reports two instances of
// "blog", one crashes, and the manager asks the controller to start that
// index again.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := membus.NewServer(membus.DefaultConfig())
	defer srv.Close()

	// What the controller wants: two instances of blog.
	desired := healthmgr.NewMemSource(protocol.BulkApp{
		ID: "blog", Version: "v1", Instances: 2, State: "STARTED", PackageState: "STAGED",
		UpdatedAt: time.Now().Add(-time.Hour).Unix(),
	})

	// The controller's side of cloudcontrollers.hm.requests.
	cc := srv.Connect()
	requests := make(chan protocol.HMRequest, 8)
	_, _ = cc.QueueSubscribe(protocol.HMRequests, protocol.ControllerQueue, func(m *bus.Msg) {
		var r protocol.HMRequest
		if json.Unmarshal(m.Data, &r) == nil {
			requests <- r
		}
	})

	// A DEA answers healthmanager.start with a heartbeat; then index 1
	// crashes.
	dea := srv.Connect()
	_, _ = dea.Subscribe(protocol.HealthManagerStart, func(*bus.Msg) {
		_ = bus.PublishJSON(dea, protocol.DEAHeartbeat, protocol.Heartbeat{DEA: "dea-1", Droplets: []protocol.InstanceHeartbeat{
			{Droplet: "blog", Version: "v1", Instance: "i0", Index: 0, State: protocol.StateRunning},
			{Droplet: "blog", Version: "v1", Instance: "i1", Index: 1, State: protocol.StateRunning},
		}})
		_ = bus.PublishJSON(dea, protocol.DropletExited, protocol.Exited{
			Droplet: "blog", Version: "v1", Instance: "i1", Index: 1, Reason: protocol.ReasonCrashed,
		})
	})

	cfg := healthmgr.DefaultConfig()
	cfg.StartupWait = 300 * time.Millisecond // one DEA heartbeat interval in real life
	cfg.LeaderElection = false               // the only health manager
	m, err := healthmgr.New(cfg, healthmgr.Deps{Bus: srv.Connect(), Desired: desired})
	if err != nil {
		fmt.Println(err)
		return
	}
	go func() { _ = m.Run(ctx) }()

	r := <-requests
	fmt.Println(r.Op, r.Droplet, "version", r.Version, "indices", r.Indices, "reason", r.Reason)
	// Output: START blog version v1 indices [1] reason crashed
}
