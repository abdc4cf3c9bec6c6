package manifest_test

import (
	"fmt"

	"github.com/kiln-paas/kiln/examples/kiln/internal/manifest"
)

func ExampleParse() {
	m, err := manifest.Parse([]byte(`
memory: 128M
applications:
- name: web
  instances: 2
  routes: [{route: web.vcap.me}]
  env: {MODE: prod}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	a := m.Applications[0]
	fmt.Println(a.Name, a.MemoryMB, a.Instances, a.Routes, a.EnvList())
	// Output: web 128 2 [web.vcap.me] [MODE=prod]
}
