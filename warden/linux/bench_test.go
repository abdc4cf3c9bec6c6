package linux_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
	"github.com/kiln-paas/kiln/warden/process"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

// BenchmarkLifecycle: go test -run '^$' -bench Lifecycle -benchtime 50x ./warden/linux/
func BenchmarkLifecycle(b *testing.B) {
	requireHost(b)
	wardentest.BenchLifecycle(b, newBackend(b, testConfig(b)))
}

// BenchmarkCreateStart measures what a DEA waits for before an instance
// runs: Create, then Run of a long-lived process (until started), on this
// backend and on warden/process, reporting the median.
//
//	go test -run '^$' -bench CreateStart -benchtime 50x ./warden/linux/
func BenchmarkCreateStart(b *testing.B) {
	requireHost(b)
	backends := []struct {
		name string
		make func(b *testing.B) warden.Backend
	}{
		{"linux", func(b *testing.B) warden.Backend { return newBackend(b, testConfig(b)) }},
		{"process", func(b *testing.B) warden.Backend {
			cfg := process.DefaultConfig()
			cfg.Root = b.TempDir()
			be, err := process.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = be.Close() })
			return be
		}},
	}
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.make(b)
			ctx := context.Background()
			var durs []time.Duration
			for b.Loop() {
				start := time.Now()
				c, err := be.Create(ctx, warden.ContainerSpec{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Run(ctx, warden.ProcessSpec{Path: "sh", Args: []string{"-c", "sleep 100"}}, warden.ProcessIO{}); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(start))
				b.StopTimer()
				if err := be.Destroy(ctx, c.Handle()); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "median-µs/create+start")
		})
	}
}

// BenchmarkMemoryOverhead reports what each container's init costs in
// memory: its resident set and its proportional share (PSS: shared
// program pages divided among the inits).
//
//	go test -run '^$' -bench MemoryOverhead -benchtime 1x ./warden/linux/
func BenchmarkMemoryOverhead(b *testing.B) {
	requireHost(b)
	const n = 10
	cfg := testConfig(b)
	be := newBackend(b, cfg)
	ctx := context.Background()
	for b.Loop() {
		var rss, pss uint64
		for i := range n {
			c, err := be.Create(ctx, warden.ContainerSpec{Handle: "mem-" + strconv.Itoa(i)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Run(ctx, warden.ProcessSpec{Path: "sleep", Args: []string{"100"}}, warden.ProcessIO{}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			pid := initPID(b, cfg, "mem-"+strconv.Itoa(i))
			r, p := smapsRollup(b, pid)
			rss, pss = rss+r, pss+p
		}
		b.ReportMetric(float64(rss)/n, "init-rss-KiB/container")
		b.ReportMetric(float64(pss)/n, "init-pss-KiB/container")
		for i := range n {
			if err := be.Destroy(ctx, "mem-"+strconv.Itoa(i)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func initPID(b *testing.B, cfg linux.Config, handle string) int {
	raw, err := os.ReadFile(filepath.Join(cfg.Root, handle, "state.json"))
	if err != nil {
		b.Fatal(err)
	}
	var st struct {
		InitPID int `json:"init_pid"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		b.Fatal(err)
	}
	return st.InitPID
}

// smapsRollup returns a process's Rss and Pss in KiB.
func smapsRollup(b *testing.B, pid int) (rss, pss uint64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "Rss:":
			rss = v
		case "Pss:":
			pss = v
		}
	}
	return rss, pss
}
