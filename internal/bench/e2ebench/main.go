// Command e2ebench measures kiln end to end, on a whole kernel in this
// process (kerneltest with warden/process: real app processes, real
// staging, the real router on loopback):
//
//	go run ./internal/bench/e2ebench
//
// It reports
//
//   - push to first 200: from creating the app to the first 200 answer
//     through the router, for the static and the Go sample apps (median
//     of -pushes; the Go pack shares the host's GOCACHE, warmed by one
//     push that is not counted);
//   - kill -9 to replacement serving: the only instance of the Go sample,
//     running past the health manager's grace period, is killed with
//     SIGKILL and the router polled until a 200 answers again (-rounds
//     rounds);
//   - requests failed while scaling from 3 instances to 1 under steady load
//     (-scales rounds, 4 concurrent clients).
//
// Goals: static < 1 s, Go < 2.5 s, kill p50 < 300 ms and worst < 1 s, no
// failed request during scale-down.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/kerneltest"
	"github.com/kiln-paas/kiln/warden"
)

func main() {
	pushes := flag.Int("pushes", 5, "pushes per sample app")
	rounds := flag.Int("rounds", 10, "kill -9 rounds")
	scales := flag.Int("scales", 3, "scale 3 to 1 rounds")
	logLevel := flag.String("log", "", "log every role's events at this level (debug, info) to stderr")
	apps := flag.String("apps", "", "directory of the sample apps (default: examples/apps of the enclosing module)")
	flag.Parse()
	dir := *apps
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			log.Fatal(err)
		}
		dir = filepath.Join(root, "examples", "apps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var opts []kerneltest.Option
	if *logLevel != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(*logLevel)); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, kerneltest.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))))
	}
	if err := run(ctx, dir, *pushes, *rounds, *scales, opts); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, apps string, pushes, rounds, scales int, opts []kerneltest.Option) error {
	k, err := kerneltest.New(ctx, append(opts, kerneltest.WithProcesses())...)
	if err != nil {
		return err
	}
	defer k.Close()

	for _, sample := range []string{"static", "go"} {
		if pushes == 0 {
			break
		}
		// One uncounted push warms the stager's tools and build cache.
		if _, err := timePush(ctx, k, sample+"-warm", filepath.Join(apps, sample)); err != nil {
			return err
		}
		var ds []time.Duration
		for i := range pushes {
			d, err := timePush(ctx, k, fmt.Sprintf("%s-%d", sample, i), filepath.Join(apps, sample))
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		report("push-to-first-200 "+sample, ds)
		for i := range pushes {
			_ = k.Client.DeleteApp(ctx, fmt.Sprintf("%s-%d", sample, i))
		}
	}

	if err := k.Push(ctx, "victim", filepath.Join(apps, "go"), 1); err != nil {
		return err
	}
	// The health manager leaves an app alone for Policy.Grace after a
	// change (the controller is acting on it); measure repairs of an app
	// in steady state.
	time.Sleep(k.Configs.HealthMgr.Policy.Grace)
	var kills []time.Duration
	for range rounds {
		d, err := timeKill(ctx, k, "victim")
		if err != nil {
			return err
		}
		kills = append(kills, d)
	}
	if rounds > 0 {
		report("kill-9-to-replacement-serving", kills)
	}

	if err := k.Client.DeleteApp(ctx, "victim"); err != nil {
		return err
	}
	if err := k.Push(ctx, "scaled", filepath.Join(apps, "go"), 3); err != nil {
		return err
	}
	var failed, total int64
	for range scales {
		f, n, err := scaleDown(ctx, k, "scaled")
		if err != nil {
			return err
		}
		failed += f
		total += n
	}
	fmt.Printf("scale-3-to-1-under-load: %d failed of %d requests (%d rounds)\n", failed, total, scales)
	return nil
}

// timePush creates, pushes and starts an app and returns the time until
// the router first answers 200 for it.
func timePush(ctx context.Context, k *kerneltest.Kernel, name, dir string) (time.Duration, error) {
	start := time.Now()
	if err := k.Push(ctx, name, dir, 1); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// timeKill kills the app's only instance with SIGKILL and returns the time
// until the router answers 200 again, which only a replacement can.
func timeKill(ctx context.Context, k *kerneltest.Kernel, name string) (time.Duration, error) {
	// Let the app settle past the health manager's grace after its
	// previous repair.
	if _, err := k.Client.WaitRunning(ctx, name, 10*time.Millisecond); err != nil {
		return 0, err
	}
	insts, err := k.Client.Instances(ctx, name)
	if err != nil || len(insts) != 1 {
		return 0, fmt.Errorf("instances of %s: %+v, %v", name, insts, err)
	}
	pids, err := instancePIDs(ctx, k.Backend, insts[0].Instance)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return 0, fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	sawFailure := false
	for {
		st, _, err := k.Get(k.AppHost(name), "/")
		if err == nil && st == http.StatusOK && sawFailure {
			return time.Since(start), nil
		}
		if err != nil || st != http.StatusOK {
			sawFailure = true
		}
		if time.Since(start) > time.Minute || ctx.Err() != nil {
			return 0, fmt.Errorf("%s: no replacement serving after %v (last %d, %v)", name, time.Since(start), st, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// instancePIDs returns the host pids of the instance's container.
func instancePIDs(ctx context.Context, b warden.Backend, instance string) ([]int, error) {
	cs, err := b.Containers(ctx, warden.Properties{dea.PropertyInstance: instance})
	if err != nil || len(cs) != 1 {
		return nil, fmt.Errorf("container of instance %s: %d found, %v", instance, len(cs), err)
	}
	info, err := cs[0].Info(ctx)
	if err != nil || len(info.PIDs) == 0 {
		return nil, fmt.Errorf("pids of instance %s: %v, %v", instance, info.PIDs, err)
	}
	return info.PIDs, nil
}

// scaleDown scales the app from 3 to 1 while four clients send requests
// (from 1 s before the scale to 1 s after only one instance is left), and
// scales it back to 3. It returns the failed and total requests.
func scaleDown(ctx context.Context, k *kerneltest.Kernel, name string) (failed, total int64, err error) {
	if err := waitInstances(ctx, k.Client, name, 3); err != nil {
		return 0, 0, err
	}
	var nFailed, nTotal atomic.Int64
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for lctx.Err() == nil {
				st, _, err := k.Get(k.AppHost(name), "/")
				nTotal.Add(1)
				if err != nil || st != http.StatusOK {
					nFailed.Add(1)
				}
			}
		})
	}
	// Steady load before, during and after the scale-down, until well
	// after the stopped instances' drain and exit.
	time.Sleep(time.Second)
	err = k.Client.Scale(ctx, name, 1)
	if err == nil {
		err = waitInstances(ctx, k.Client, name, 1)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	if err != nil {
		return 0, 0, err
	}
	if err := k.Client.Scale(ctx, name, 3); err != nil {
		return 0, 0, err
	}
	return nFailed.Load(), nTotal.Load(), nil
}

// waitInstances waits until exactly n instances are reported, all RUNNING.
func waitInstances(ctx context.Context, cl *client.Client, name string, n int) error {
	for {
		insts, err := cl.Instances(ctx, name)
		running := 0
		for _, i := range insts {
			if i.State == "RUNNING" {
				running++
			}
		}
		if err == nil && running == n && len(insts) == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d instances, %d running, want %d: %w", name, len(insts), running, n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// report prints the median, p50 (same), worst and every sample.
func report(what string, ds []time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	var all []string
	for _, d := range ds {
		all = append(all, d.Round(time.Millisecond).String())
	}
	fmt.Printf("%s: median %v, best %v, worst %v (n=%d: %s)\n", what,
		s[len(s)/2].Round(time.Millisecond), s[0].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond),
		len(s), strings.Join(all, " "))
}

// moduleRoot walks up from the working directory to kiln's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/kiln-paas/kiln\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the kiln module: give -apps")
		}
		dir = parent
	}
}
