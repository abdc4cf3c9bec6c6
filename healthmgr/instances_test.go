package healthmgr

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/healthmgr/drift"
)

func TestInstanceSet(t *testing.T) {
	t.Parallel()
	var s instanceSet
	for i := range 6 {
		in, added := s.getOrAdd("a", fmt.Sprint("i", i))
		if !added {
			t.Fatalf("i%d not added", i)
		}
		in.Index = i
	}
	if _, added := s.getOrAdd("a", "i3"); added {
		t.Fatal("i3 added twice")
	}
	if !s.remove("i1") || s.remove("i1") {
		t.Fatal("remove i1: want true once")
	}
	s.removeIf(func(in *drift.Instance) bool { return in.Index%2 == 0 })
	var got []string
	for _, in := range s.list {
		got = append(got, in.ID)
		if s.get(in.ID) == nil || s.get(in.ID).ID != in.ID {
			t.Errorf("index of %s broken", in.ID)
		}
	}
	// i1 removed (i5 moved to its slot), then the even ones.
	if diff := cmp.Diff([]string{"i5", "i3"}, got); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
	if s.len() != 2 || len(s.pos) != 2 || s.get("i0") != nil {
		t.Errorf("len %d, indexed %d, i0 %v", s.len(), len(s.pos), s.get("i0"))
	}
}
