package bus_test

import (
	"context"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
)

func ExampleMatch() {
	for _, c := range [][2]string{
		{"dea.*.start", "dea.7.start"},
		{"dea.*.start", "dea.7.stop"},
		{"router.>", "router.register"},
		{"router.>", "router"},
	} {
		fmt.Printf("%s %s %v\n", c[0], c[1], bus.Match(c[0], c[1]))
	}
	// Output:
	// dea.*.start dea.7.start true
	// dea.*.start dea.7.stop false
	// router.> router.register true
	// router.> router false
}

func ExampleValidateSubject() {
	for _, s := range []string{"droplet.exited", "dea.*.>", "a..b", "a.>.b"} {
		fmt.Println(s, bus.ValidateSubject(s))
	}
	// Output:
	// droplet.exited <nil>
	// dea.*.> <nil>
	// a..b bus: invalid subject "a..b": empty token
	// a.>.b bus: invalid subject "a.>.b": '>' must be the last token
}

// A responder answers JSON requests with RespondJSON; a client asks with
// RequestJSON. The in-process bus stands in for NATS here.
func ExampleRequestJSON() {
	b := membus.New()
	defer b.Close()

	type discover struct {
		App    string `json:"droplet"`
		Memory int    `json:"limits_mem"`
	}
	type advert struct {
		ID string `json:"id"`
	}
	_, err := b.Subscribe("dea.discover", func(m *bus.Msg) {
		_ = bus.RespondJSON(b, m, advert{ID: "dea-1"})
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got advert
	if err := bus.RequestJSON(ctx, b, "dea.discover", discover{App: "web", Memory: 256}, &got); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("placed on", got.ID)
	// Output: placed on dea-1
}
