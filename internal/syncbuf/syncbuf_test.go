package syncbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWrites(t *testing.T) {
	const writers, lines = 8, 100
	var b Buffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				fmt.Fprintf(&b, "w%d-%d\n", w, i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	seen := map[string]bool{}
	for _, l := range got {
		seen[l] = true
	}
	if len(seen) != writers*lines {
		t.Errorf("got %d distinct lines, want %d (writes interleaved)", len(seen), writers*lines)
	}
}

func TestZeroValueEmpty(t *testing.T) {
	var b Buffer
	if got := b.String(); got != "" {
		t.Errorf("String() = %q, want empty", got)
	}
}
