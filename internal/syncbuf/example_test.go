package syncbuf_test

import (
	"fmt"
	"log/slog"

	"github.com/kiln-paas/kiln/internal/syncbuf"
)

func Example() {
	var out syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	log.Info("app-started", "app", "hello")
	fmt.Print(out.String())
	// Output: level=INFO msg=app-started app=hello
}
