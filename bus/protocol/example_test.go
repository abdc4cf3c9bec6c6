package protocol_test

import (
	"fmt"

	"github.com/kiln-paas/kiln/bus/protocol"
)

func ExampleDecode() {
	// A router.register as a DEA sends it; unknown fields are ignored.
	data := []byte(`{"dea":"d1","app":"42","host":"127.0.0.1","port":61001,"uris":["foo.example.com"],"future":1}`)
	reg, err := protocol.Decode[protocol.Register](data)
	if err != nil {
		fmt.Println("drop:", err)
		return
	}
	fmt.Println(reg.Addr(), reg.URIs[0])

	// A message a handler could not act on is refused.
	_, err = protocol.Decode[protocol.Register]([]byte(`{"host":"127.0.0.1","port":0,"uris":["x"]}`))
	fmt.Println(err)
	// Output:
	// 127.0.0.1:61001 foo.example.com
	// protocol: invalid message: router.register 127.0.0.1: bad port 0
}
