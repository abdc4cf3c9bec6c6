package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/natsbus"
)

// An embedded server on a random loopback port, a connection to it, and a
// publish, a subscription and a request over it.
func Example() {
	srv, err := natsbus.RunServer(natsbus.DefaultServerConfig())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := natsbus.DefaultConfig()
	cfg.URLs = []string{srv.ClientURL()}
	cfg.Name = "example"
	conn, err := natsbus.Connect(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	got := make(chan string, 1)
	if _, err := conn.Subscribe("router.register", func(m *bus.Msg) {
		got <- fmt.Sprintf("%s: %s", m.Subject, m.Data)
	}); err != nil {
		log.Fatal(err)
	}
	if _, err := conn.Subscribe("dea.discover", func(m *bus.Msg) {
		_ = conn.Publish(m.Reply, []byte(`{"id":"dea-1"}`))
	}); err != nil {
		log.Fatal(err)
	}
	if err := conn.Publish("router.register", []byte(`{"host":"10.0.0.5","port":61001}`)); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)

	reply, err := conn.Request(ctx, "dea.discover", []byte(`{"droplet":42}`))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("reply: %s\n", reply.Data)

	_, err = conn.Request(ctx, "nobody.listens", nil)
	fmt.Println(err != nil && errors.Is(err, bus.ErrNoResponders))

	if err := conn.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(conn.Publish("router.register", nil) != nil)
	// Output:
	// router.register: {"host":"10.0.0.5","port":61001}
	// reply: {"id":"dea-1"}
	// true
	// true
}
