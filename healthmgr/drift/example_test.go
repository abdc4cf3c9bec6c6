package drift_test

import (
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// One analysis pass: a rolling update in progress, a crashed index and a
// deleted app.
func Example() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	seen := now.Add(-3 * time.Second)
	desired := []drift.App{{ID: "blog", Version: "v2", Instances: 3, State: drift.AppStarted, UpdatedAt: now.Add(-time.Hour)}}
	actual := []drift.Instance{
		{App: "blog", Version: "v1", Index: 0, ID: "old-0", State: drift.Running, Since: now.Add(-time.Hour), LastSeen: seen},
		{App: "blog", Version: "v2", Index: 0, ID: "new-0", State: drift.Running, Since: now.Add(-time.Minute), LastSeen: seen},
		{App: "blog", Version: "v1", Index: 1, ID: "old-1", State: drift.Running, Since: now.Add(-time.Hour), LastSeen: seen},
		{App: "blog", Version: "v2", Index: 1, ID: "new-1", State: drift.Starting, Since: now.Add(-5 * time.Second), LastSeen: seen},
		{App: "blog", Version: "v2", Index: 2, ID: "new-2", State: drift.Crashed, Since: now.Add(-20 * time.Second), LastSeen: seen},
		{App: "gone", Version: "v9", Index: 0, ID: "orphan", State: drift.Running, Since: now.Add(-time.Hour), LastSeen: seen},
	}
	h := drift.NewHistory()
	h.RecordCrash("blog", "v2", 2, "new-2", now.Add(-20*time.Second))

	actions := drift.Analyze(drift.DefaultPolicy(), desired, actual, h, now)
	for _, a := range actions {
		fmt.Println(a.App, a.Op, a.Reason, a.Indices, a.Instances, "-", a.Text)
	}
	// The health manager sends them, then remembers it did.
	h.RecordSent(now, actions)
	fmt.Println("repeated at once:", len(drift.Analyze(drift.DefaultPolicy(), desired, actual, h, now)))
	// Output:
	// blog START crashed [2] [] - crashed at index 2; restarting at once
	// blog STOP superseded [] [old-0] - 1 instance of an old version; the current version runs at their indices
	// gone STOP app-deleted [] [orphan] - 1 instance of an app that no longer exists
	// repeated at once: 0
}
