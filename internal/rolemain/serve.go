package rolemain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// ShutdownTimeout bounds how long ServeHTTP lets requests in flight finish
// once its context ends: long enough for a normal request, short enough
// that a stopping role does not hold its supervisor.
const ShutdownTimeout = 10 * time.Second

// readHeaderTimeout bounds how long a client may take to send its request
// headers, so that idle half-open connections cannot pile up.
const readHeaderTimeout = 10 * time.Second

// ServeHTTP serves h on ln in g until ctx ends, then shuts the server down
// gracefully, letting requests in flight finish within ShutdownTimeout.
// ln is closed by the server. When logger is not nil the server's own
// errors (bad TLS handshakes, panics in handlers) go to it at warn level;
// nil leaves them to net/http's default. A failure to serve is returned by
// g.Wait, wrapped.
func ServeHTTP(ctx context.Context, g *errgroup.Group, ln net.Listener, h http.Handler, logger *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout}
	if logger != nil {
		srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

// Endpoint is one place a command serves, printed as a "name=url" line.
type Endpoint struct {
	Name string // what serves there: "router", "admin", "controller"…
	URL  string
}

// HTTPEndpoint is the endpoint called name served over HTTP on ln.
func HTTPEndpoint(name string, ln net.Listener) Endpoint {
	return Endpoint{Name: name, URL: "http://" + ln.Addr().String()}
}

// WriteEndpoints writes one "name=url" line per endpoint to w, in one
// write.
func WriteEndpoints(w io.Writer, eps ...Endpoint) error {
	_, err := io.WriteString(w, endpointLines(eps))
	return err
}

// Announce writes the endpoints as WriteEndpoints does and then "ready", in
// one write: what a command prints on standard output once it serves, and
// what whoever starts it reads up to "ready".
func Announce(w io.Writer, eps ...Endpoint) error {
	_, err := io.WriteString(w, endpointLines(eps)+"ready\n")
	return err
}

func endpointLines(eps []Endpoint) string {
	var b strings.Builder
	for _, ep := range eps {
		b.WriteString(ep.Name + "=" + ep.URL + "\n")
	}
	return b.String()
}

// Listeners are a role's open TCP listeners, in the order of the addresses
// Listen was given.
type Listeners []net.Listener

// Listen opens a TCP listener on each of addrs, in order, so that every
// address (port 0 picks a free port) is known before the role is
// configured. When one fails, those already open are closed.
func Listen(addrs ...string) (Listeners, error) {
	ls := make(Listeners, 0, len(addrs))
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("listen: %w", err)
		}
		ls = append(ls, ln)
	}
	return ls, nil
}

// Close closes every listener. Closing one that a server has closed
// already is harmless.
func (ls Listeners) Close() {
	for _, ln := range ls {
		_ = ln.Close()
	}
}
