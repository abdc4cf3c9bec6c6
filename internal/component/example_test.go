package component_test

import (
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/kiln-paas/kiln/internal/component"
)

func ExampleComponent_Handler() {
	c := component.New(component.Config{Type: "Router"}, nil, nil)
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/healthz")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, body)
	// Output: 200 ok
}
