package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKernelCommand runs examples/kernel as a user would: it boots, pushes
// the sample, prints its endpoints and serves the sample through the router;
// after SIGTERM and a restart on the same data directory the sample serves
// again.
func TestKernelCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs examples/kernel")
	}
	t.Parallel()
	ctx := testCtx(t, 3*time.Minute)
	bin := filepath.Join(buildRoles(t), "kernel")
	data := t.TempDir()
	args := []string{"--data-dir", data, "--controller-addr", "127.0.0.1:0", "--router-addr", "127.0.0.1:0",
		"--admin-addr", "127.0.0.1:0", "--log-level", "warn"}

	k := startRole(t, bin, args...)
	if k.endpoints["admin-password"] == "" || k.endpoints["admin-email"] != "admin@kiln.local" {
		t.Errorf("first start printed no generated admin credentials: %v", k.endpoints)
	}
	for _, ep := range []string{"controller", "router", "nats", "app"} {
		if k.endpoints[ep] == "" {
			t.Fatalf("no %s= line in %v", ep, k.endpoints)
		}
	}
	if !strings.HasPrefix(k.endpoints["nats"], "nats://127.0.0.1:") {
		t.Errorf("nats=%s", k.endpoints["nats"])
	}
	c := &cluster{router: k}
	const host = "hello.localhost"
	if body := c.waitStatus(ctx, t, host, http.StatusOK); !strings.Contains(body, "Hello from static!") {
		t.Fatalf("sample body %q", body)
	}
	k.stop(t)

	// The second start finds the admin and the app: no password line, and
	// the sample comes back.
	k2 := startRole(t, bin, append(args, "--admin-password", "ignored-now")...)
	c = &cluster{router: k2}
	if body := c.waitStatus(ctx, t, host, http.StatusOK); !strings.Contains(body, "Hello from static!") {
		t.Fatalf("sample body after restart %q", body)
	}
	if _, ok := k2.endpoints["admin-password"]; ok {
		t.Error("admin password printed again after restart")
	}
}
