package controller

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store"
)

// BenchmarkListApps measures GET /apps for a user with 1,000 apps and
// reports the median latency.
func BenchmarkListApps(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.UserQuota.Apps = 2000 })
	cl := e.user("many@x.io")
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		_, err := e.store.CreateApp(ctx, store.App{Name: fmt.Sprintf("app-%04d", i), Owner: "many@x.io", State: store.AppStopped, Instances: 1, MemoryMB: 64, URIs: []string{fmt.Sprintf("app-%04d.vcap.me", i)}})
		if err != nil {
			b.Fatal(err)
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/apps", nil)
	req.Header.Set("Authorization", cl.Token())
	hc := e.srv.Client()
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := resp.Body.Read(make([]byte, 1))
		for n > 0 {
			n, _ = resp.Body.Read(make([]byte, 32<<10))
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
}

// BenchmarkPush10MB pushes a 10 MB app of 100 files of which 90% (or none)
// are already in the resource pool, and reports the bytes sent per push.
func BenchmarkPush10MB(b *testing.B) {
	for _, tc := range []struct {
		name  string
		fresh int // files changed before each push
	}{{"pooled-90pct", 10}, {"pooled-none", 100}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.MaxUploadBytes = 64 << 20 })
			cl := e.user("push@x.io")
			ctx := context.Background()
			if err := cl.CreateApp(ctx, (clientAppRequest("big"))); err != nil {
				b.Fatal(err)
			}
			dir := b.TempDir()
			const files, size = 100, 100 << 10
			buf := make([]byte, size)
			write := func(i int) {
				_, _ = rand.Read(buf)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.bin", i)), buf, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < files; i++ {
				write(i)
			}
			if _, err := cl.Push(ctx, "big", dir); err != nil {
				b.Fatal(err)
			}
			waitApp(b, cl, "big", func(a client.App) bool { return a.PackageState == store.PackageStaged })
			var sent int64
			for b.Loop() {
				b.StopTimer()
				for i := 0; i < tc.fresh; i++ {
					write(i)
				}
				b.StartTimer()
				st, err := cl.Push(ctx, "big", dir)
				if err != nil {
					b.Fatal(err)
				}
				sent += st.Sent
				// Let the staging the push started finish outside the
				// timer, so stagings do not overlap the next push.
				b.StopTimer()
				waitApp(b, cl, "big", func(a client.App) bool { return a.PackageState == store.PackageStaged })
				b.StartTimer()
			}
			b.ReportMetric(float64(sent)/float64(b.N), "bytes-sent/op")
		})
	}
}
