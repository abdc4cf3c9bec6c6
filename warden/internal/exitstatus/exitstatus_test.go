package exitstatus

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestTwoSteps(t *testing.T) {
	e := New()
	if e.HasExited() {
		t.Fatal("a new Exit has exited")
	}
	e.MarkExited()
	e.MarkExited() // harmless
	if !e.HasExited() {
		t.Fatal("not exited after MarkExited")
	}
	select {
	case <-e.Done():
		t.Fatal("done before Finish")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with an ended ctx = %v", err)
	}
	e.Finish(3)
	e.Finish(4) // only the first counts
	for range 2 {
		if got, err := e.Wait(context.Background()); got != 3 || err != nil {
			t.Errorf("Wait = %d, %v; want 3", got, err)
		}
	}
	e.MarkExited() // after Finish: nothing
}

func TestFinishAloneMarksExited(t *testing.T) {
	e := New()
	e.Finish(-1)
	select {
	case <-e.Exited():
	default:
		t.Error("Finish did not mark the process exited")
	}
}

func TestConcurrentWaiters(t *testing.T) {
	e := New()
	var wg sync.WaitGroup
	got := make([]int, 8)
	for i := range got {
		wg.Go(func() {
			got[i], _ = e.Wait(context.Background())
		})
	}
	wg.Go(func() { e.Finish(7) })
	wg.Go(e.MarkExited)
	wg.Wait()
	for i, s := range got {
		if s != 7 {
			t.Errorf("waiter %d got %d", i, s)
		}
	}
}
