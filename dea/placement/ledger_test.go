package placement

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLedger(t *testing.T) {
	t.Parallel()
	l := NewLedger()
	a := Request{App: "a", MemoryMB: 256, DiskMB: 100}
	b := Request{App: "b", MemoryMB: 512, DiskMB: 50}
	l.Hold("a/0", a, t0.Add(time.Second))
	l.Hold("b/0", b, t0.Add(2*time.Second))
	l.Hold("a/1", a, t0.Add(time.Second))
	want := Load{HeldMemoryMB: 1024, HeldDiskMB: 250, HeldInstances: 3, Apps: map[string]int{}}
	if diff := cmp.Diff(want, l.Load()); diff != "" {
		t.Fatalf("after holds (-want +got):\n%s", diff)
	}
	if !l.Confirm("a/0") || l.Confirm("missing") {
		t.Fatalf("Confirm results wrong")
	}
	if !l.Confirm("a/0") { // confirming twice changes nothing
		t.Fatalf("second Confirm failed")
	}
	want = Load{MemoryMB: 256, DiskMB: 100, Instances: 1, Apps: map[string]int{"a": 1},
		HeldMemoryMB: 768, HeldDiskMB: 150, HeldInstances: 2}
	if diff := cmp.Diff(want, l.Load()); diff != "" {
		t.Fatalf("after confirming (-want +got):\n%s", diff)
	}
	// Holds count against capacity.
	c := Capacity{MemoryMB: 1200}
	if r := Check(DefaultConfig(), c, l.Load(), Request{MemoryMB: 200}); r != ReasonMemory {
		t.Fatalf("Check with holds = %v, want %v", r, ReasonMemory)
	}
	if n := l.Expire(t0.Add(time.Second)); n != 1 {
		t.Fatalf("Expire dropped %d, want 1 (a/1)", n)
	}
	if n := l.Expire(t0.Add(time.Hour)); n != 1 {
		t.Fatalf("Expire dropped %d, want 1 (b/0)", n)
	}
	want = Load{MemoryMB: 256, DiskMB: 100, Instances: 1, Apps: map[string]int{"a": 1}}
	if diff := cmp.Diff(want, l.Load()); diff != "" {
		t.Fatalf("after expiry (-want +got):\n%s", diff)
	}
	l.Reserve("a/0", b) // replacing a key re-accounts it
	l.Reserve("c/0", Request{App: "c", MemoryMB: 1})
	if !l.Release("c/0") || l.Release("c/0") {
		t.Fatalf("Release results wrong")
	}
	want = Load{MemoryMB: 512, DiskMB: 50, Instances: 1, Apps: map[string]int{"b": 1}}
	if diff := cmp.Diff(want, l.Load()); diff != "" {
		t.Fatalf("after replace and release (-want +got):\n%s", diff)
	}
}
