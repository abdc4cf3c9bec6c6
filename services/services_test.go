package services_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
)

func TestVCAPServices(t *testing.T) {
	t.Parallel()
	pg1 := services.Credential{Name: "db1", Label: "postgresql", Plan: "shared", Credentials: map[string]any{"uri": "postgres://a"}}
	pg2 := services.Credential{Name: "db2", Label: "postgresql", Plan: "shared", Tags: []string{"sql"}, Credentials: map[string]any{"uri": "postgres://b"}}
	mem := services.Credential{Name: "cache", Label: "memory", Plan: "free"}
	got := services.VCAPServices([]services.Credential{pg1, mem, pg2})
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var decoded map[string][]map[string]any
	if err := json.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	want := map[string][]map[string]any{
		"postgresql": {
			{"name": "db1", "label": "postgresql", "plan": "shared", "tags": []any{}, "credentials": map[string]any{"uri": "postgres://a"}},
			{"name": "db2", "label": "postgresql", "plan": "shared", "tags": []any{"sql"}, "credentials": map[string]any{"uri": "postgres://b"}},
		},
		"memory": {{"name": "cache", "label": "memory", "plan": "free", "tags": []any{}, "credentials": nil}},
	}
	if diff := cmp.Diff(want, decoded); diff != "" {
		t.Errorf("VCAP_SERVICES (-want +got):\n%s", diff)
	}
	if len(services.VCAPServices(nil)) != 0 {
		t.Error("VCAPServices(nil) is not empty")
	}
}

// scripted answers LastOperation from a list of states, then errors.
type scripted struct {
	services.Broker
	states []services.LastOperation
	polls  atomic.Int32
}

func (s *scripted) LastOperation(ctx context.Context, req services.LastOperationRequest) (services.LastOperation, error) {
	i := int(s.polls.Add(1)) - 1
	if i >= len(s.states) {
		return services.LastOperation{}, services.ErrInstanceNotFound
	}
	return s.states[i], nil
}

func TestWaitForOperation(t *testing.T) {
	t.Parallel()
	inProgress := services.LastOperation{State: services.StateInProgress}
	tests := []struct {
		name      string
		states    []services.LastOperation
		wantState string
		wantErr   error
		wantPolls int32
	}{
		{"succeeds", []services.LastOperation{inProgress, inProgress, {State: services.StateSucceeded}}, services.StateSucceeded, nil, 3},
		{"fails", []services.LastOperation{inProgress, {State: services.StateFailed, Description: "out of disk"}}, services.StateFailed, services.ErrOperationFailed, 2},
		{"gone", []services.LastOperation{inProgress}, "", services.ErrInstanceNotFound, 2},
		{"bad state", []services.LastOperation{{State: "weird"}}, "weird", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := &scripted{states: tt.states}
			op, err := services.WaitForOperation(context.Background(), b, services.LastOperationRequest{InstanceID: "i", Operation: "op"}, time.Microsecond)
			if op.State != tt.wantState {
				t.Errorf("state %q, want %q", op.State, tt.wantState)
			}
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			case tt.name == "bad state" && err == nil:
				t.Error("unknown state accepted")
			case tt.name == "succeeds" && err != nil:
				t.Errorf("err = %v", err)
			}
			if got := b.polls.Load(); got != tt.wantPolls {
				t.Errorf("%d polls, want %d", got, tt.wantPolls)
			}
		})
	}
}

func TestWaitForOperationContext(t *testing.T) {
	t.Parallel()
	mem, err := membroker.New(membroker.Config{Async: true, AsyncPolls: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := mem.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: "kiln-memory-service", PlanID: "kiln-memory-free", AcceptsIncomplete: true})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	op, err := services.WaitForOperation(cctx, mem, services.LastOperationRequest{InstanceID: "i", Operation: res.Operation}, time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || op.State != services.StateInProgress {
		t.Errorf("WaitForOperation = %+v, %v; want in progress, DeadlineExceeded", op, err)
	}
}
