package osb

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
)

// FuzzDecodeProvision checks that any body either decodes to a request with
// the required ids or fails with ErrBadRequest, and that a decoded request
// survives a round trip through the client's encoding.
func FuzzDecodeProvision(f *testing.F) {
	f.Add([]byte(`{"service_id":"s","plan_id":"p","context":{"space_guid":"x"},"parameters":{"a":[1,2]}}`))
	f.Add([]byte(`{"service_id":"s","plan_id":"p","organization_guid":"o"}`))
	f.Add([]byte(`{"service_id":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Add([]byte(`{"service_id":"s","plan_id":"p"} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeProvision("id", data)
		if err != nil {
			if !errors.Is(err, services.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if req.ServiceID == "" || req.PlanID == "" || req.InstanceID != "id" {
			t.Fatalf("decoded %+v without required ids", req)
		}
		enc, err := json.Marshal(provisionBody{ServiceID: req.ServiceID, PlanID: req.PlanID,
			OrganizationGUID: req.OrganizationID, SpaceGUID: req.SpaceID, Parameters: req.Parameters})
		if err != nil {
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		again, err := decodeProvision("id", enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		if diff := cmp.Diff(req, again); diff != "" {
			t.Fatalf("round trip changed the request (-first +again):\n%s", diff)
		}
	})
}

// FuzzDecodeBind is FuzzDecodeProvision for bind bodies.
func FuzzDecodeBind(f *testing.F) {
	f.Add([]byte(`{"service_id":"s","plan_id":"p","bind_resource":{"app_guid":"a"}}`))
	f.Add([]byte(`{"service_id":"s","plan_id":"p","app_guid":"a","parameters":{"x":null}}`))
	f.Add([]byte(`{"bind_resource":null}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeBind("i", "b", data)
		if err != nil {
			if !errors.Is(err, services.ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if req.ServiceID == "" || req.PlanID == "" || req.InstanceID != "i" || req.BindingID != "b" {
			t.Fatalf("decoded %+v without required ids", req)
		}
		enc, err := json.Marshal(bindBody{ServiceID: req.ServiceID, PlanID: req.PlanID, AppGUID: req.AppID, Parameters: req.Parameters})
		if err != nil {
			t.Fatalf("re-encode %+v: %v", req, err)
		}
		again, err := decodeBind("i", "b", enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		if diff := cmp.Diff(req, again); diff != "" {
			t.Fatalf("round trip changed the request (-first +again):\n%s", diff)
		}
	})
}
