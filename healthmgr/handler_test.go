package healthmgr

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/bus/protocol"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	h := w.start(testConfig())
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"))
	w.ready(h, map[string]int{"blog": 1})
	srv := httptest.NewServer(h.Handler())
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s, want 200", code, body)
	}
	code, body := get("/varz")
	var varz map[string]any
	if code != http.StatusOK || json.Unmarshal([]byte(body), &varz) != nil {
		t.Fatalf("/varz = %d %s", code, body)
	}
	if varz["type"] != "HealthManager" || varz["apps"] != 1.0 || varz["instances"] != 1.0 || varz["leader"] != true {
		t.Errorf("/varz = %v", varz)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "kiln_healthmgr_leader 1") {
		t.Errorf("/metrics = %d, leader gauge missing:\n%s", code, body)
	}

	// The desired state cannot be read: unhealthy.
	w.src.SetErr(errDown)
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	eventually(t, "failed reload", func() bool { return h.metric("kiln_healthmgr_desired_up", nil) == 0 })
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "desired") {
		t.Errorf("/healthz with source down = %d %s, want 503", code, body)
	}
}
