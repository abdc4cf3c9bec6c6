package table_test

import (
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/router/table"
)

func Example() {
	t := table.New()
	now := time.Now()
	t.Upsert("*.apps.example.com", table.EndpointInfo{Addr: "10.0.0.1:61001", Index: -1}, now)
	t.Upsert("shop.apps.example.com/cart", table.EndpointInfo{Addr: "10.0.0.2:61002", AppID: "cart", Index: 0}, now)

	for _, req := range [][2]string{
		{"Shop.Apps.Example.com:443", "/cart/items"},
		{"blog.apps.example.com", "/"},
		{"example.org", "/"},
	} {
		if p := t.Lookup(req[0], req[1]); p != nil {
			fmt.Println(req[0], req[1], "->", p.Route(), p.Pick(table.Random, now.UnixNano(), nil).Addr)
		} else {
			fmt.Println(req[0], req[1], "-> no route")
		}
	}
	// Output:
	// Shop.Apps.Example.com:443 /cart/items -> shop.apps.example.com/cart 10.0.0.2:61002
	// blog.apps.example.com / -> *.apps.example.com 10.0.0.1:61001
	// example.org / -> no route
}
