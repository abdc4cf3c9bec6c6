package rolemain

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kiln-paas/kiln/bus/natsbus"
)

// ConnectNATS connects to the NATS servers at urls (comma separated, as the
// --nats flag takes them) with natsbus's default configuration, naming the
// connection name and logging with logger under role=bus.
func ConnectNATS(ctx context.Context, urls, name string, logger *slog.Logger) (*natsbus.Conn, error) {
	cfg := natsbus.DefaultConfig()
	cfg.URLs = strings.Split(urls, ",")
	cfg.Name = name
	cfg.Logger = logger.With("role", "bus")
	b, err := natsbus.Connect(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	return b, nil
}
