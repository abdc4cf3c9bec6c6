package accesslog_test

import (
	"context"
	"os"
	"time"

	"github.com/kiln-paas/kiln/router/accesslog"
)

func Example() {
	l := accesslog.New(os.Stdout, 0)
	l.Log(&accesslog.Record{
		Host: "app.example.com", Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Method: "GET", URI: "/", Proto: "HTTP/1.1", Status: 200, BytesSent: 2,
		RemoteAddr: "10.0.0.9:50000", BackendAddr: "10.0.1.2:61001", Duration: time.Millisecond, AppID: "app1",
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run writes what is queued, then returns.
	_ = l.Run(ctx)
	// Output:
	// app.example.com - [02/01/2026:03:04:05 +0000] "GET / HTTP/1.1" 200 2 - - "10.0.0.9:50000" "10.0.1.2:61001" x_forwarded_for:- vcap_request_id:- response_time:0.001000000 app_id:"app1"
}
