package rolemain_test

import (
	"flag"
	"fmt"
	"os"

	"github.com/kiln-paas/kiln/internal/rolemain"
)

// A role's flags come from the command line first and from KILN_*
// variables second; once it serves, it announces its endpoints.
func Example() {
	fset := flag.NewFlagSet("router", flag.ContinueOnError)
	addr := fset.String("addr", "127.0.0.1:8080", "proxy listen address")
	grace := fset.Duration("empty-route-grace", 0, "how long an empty route answers 503")
	env := map[string]string{"KILN_ADDR": "127.0.0.1:80", "KILN_EMPTY_ROUTE_GRACE": "5s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	if err := rolemain.ParseFlags(fset, []string{"--addr", "127.0.0.1:8088"}, lookup); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("addr", *addr, "grace", *grace, "from", rolemain.EnvName("empty-route-grace"))

	_ = rolemain.Announce(os.Stdout,
		rolemain.Endpoint{Name: "router", URL: "http://" + *addr},
		rolemain.Endpoint{Name: "admin", URL: "http://127.0.0.1:8082"})
	// Output:
	// addr 127.0.0.1:8088 grace 5s from KILN_EMPTY_ROUTE_GRACE
	// router=http://127.0.0.1:8088
	// admin=http://127.0.0.1:8082
	// ready
}
