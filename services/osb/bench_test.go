package osb_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/services/osb"
)

// BenchmarkServerBind measures the server's own cost per request (auth,
// version check, body decoding, response encoding) without a network.
func BenchmarkServerBind(b *testing.B) {
	mem, _ := membroker.New(membroker.DefaultConfig())
	s, err := osb.NewServer(mem, osb.Config{Username: "u", Password: "p"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := mem.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: svcID, PlanID: planID}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest("PUT", "/v2/service_instances/i/service_bindings/b"+strconv.Itoa(i), strings.NewReader(bindBody))
		req.SetBasicAuth("u", "p")
		req.Header.Set(osb.HeaderAPIVersion, osb.APIVersion)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkClientServerLastOperation measures a full poll: client, HTTP
// over loopback, server, broker and back.
func BenchmarkClientServerLastOperation(b *testing.B) {
	mem, _ := membroker.New(membroker.DefaultConfig())
	s, _ := osb.NewServer(mem, osb.Config{Username: "u", Password: "p"})
	ts := httptest.NewServer(s)
	defer ts.Close()
	cl, err := osb.NewClient(osb.Config{URL: ts.URL, Username: "u", Password: "p", HTTPClient: ts.Client()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cl.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: svcID, PlanID: planID}); err != nil {
		b.Fatal(err)
	}
	req := services.LastOperationRequest{InstanceID: "i", ServiceID: svcID, PlanID: planID}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.LastOperation(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
