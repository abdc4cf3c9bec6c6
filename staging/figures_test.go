package staging_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/staging"
)

// TestStagingFigures measures the staging time of each sample app, cold
// (no build cache) and cached (CacheIn from the previous staging), median
// of 5 each, on warden/process. For Go it also measures cold stagings with
// GoBuildpack.SharedBuildCache pointing at the host's warm GOCACHE. It is
// skipped unless -kiln.figures is given, since cold Go builds take a
// minute each on a busy machine:
//
//	go test -run TestStagingFigures -kiln.figures -v -timeout 30m ./staging/
func TestStagingFigures(t *testing.T) {
	if !*figures {
		t.Skip("run with -kiln.figures to measure staging times")
	}
	backend := newBackend(t)
	const runs = 5
	for _, app := range []string{"static", "python", "node", "go"} {
		z := sampleZip(t, app)
		s := staging.New(testConfig(t, false), backend, nil)
		var cold, cached []time.Duration
		var cache []byte
		var res staging.Result
		for range runs {
			var out bytes.Buffer
			start := time.Now()
			_, r, err := stage(t, s, staging.Request{CacheOut: &out}, z)
			if err != nil {
				t.Fatal(err)
			}
			cold = append(cold, time.Since(start))
			cache, res = out.Bytes(), r
		}
		for range runs {
			var out bytes.Buffer
			start := time.Now()
			_, _, err := stage(t, s, staging.Request{CacheIn: bytes.NewReader(cache), CacheOut: &out}, z)
			if err != nil {
				t.Fatal(err)
			}
			cached = append(cached, time.Since(start))
			cache = out.Bytes()
		}
		line := fmt.Sprintf("%-7s cold %8v  cached %8v  droplet %7.1f KiB  cache %8.1f KiB",
			app, median(cold), median(cached), float64(res.DropletSize)/1024, float64(len(cache))/1024)
		if app == "go" {
			shared := staging.New(testConfig(t, true), backend, nil)
			var sh []time.Duration
			for range runs {
				start := time.Now()
				if _, _, err := stage(t, shared, staging.Request{}, z); err != nil {
					t.Fatal(err)
				}
				sh = append(sh, time.Since(start))
			}
			line += fmt.Sprintf("  cold with SharedBuildCache %v", median(sh))
		}
		t.Log(line)
		fmt.Println("figures:", line)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

// BenchmarkStage stages each sample app with its build cache (and, for
// Go, the host's GOCACHE shared), the steady state of repeated pushes.
func BenchmarkStage(b *testing.B) {
	backend := newBackend(b)
	for _, app := range []string{"static", "python", "node", "go"} {
		b.Run(app, func(b *testing.B) {
			z := sampleZip(b, app)
			s := staging.New(testConfig(b, true), backend, nil)
			var cache bytes.Buffer
			if _, _, err := stage(b, s, staging.Request{CacheOut: &cache}, z); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				var out bytes.Buffer
				if _, _, err := stage(b, s, staging.Request{CacheIn: bytes.NewReader(cache.Bytes()), CacheOut: &out}, z); err != nil {
					b.Fatal(err)
				}
				cache = out
			}
		})
	}
}
