package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/examples/kiln/internal/manifest"
)

// pushFlags are push's command line.
type pushFlags struct {
	manifest    string
	noManifest  bool
	path        string
	urls        []string
	noRoute     bool
	instances   int
	mem         string
	noStart     bool
	buildpack   string
	command     string
	hcType      string
	hcEndpoint  string
	timeout     int
	env         []string
	services    []string
	noWait      bool
	appSpecific []string // names of the app-specific flags given
}

func (k *cli) pushCommands() []*cobra.Command {
	var f pushFlags
	push := &cobra.Command{
		Use:   "push [NAME]",
		Short: "Create or update apps from a directory or a manifest.yml, and start them",
		Long: "Create the app (or update it if it exists), upload its files, stream its staging log and\n" +
			"start it, waiting until every instance runs. Settings come from manifest.yml (in the\n" +
			"current directory or --path, or -f FILE) and flags, flags winning. Without NAME every\n" +
			"app of the manifest is pushed.",
		Args: maxArgs(1),
		RunE: k.action(func(cmd *cobra.Command, args []string) error {
			for _, n := range []string{"path", "url", "no-route", "instances", "mem", "buildpack", "command", "health-check-type", "health-check-http-endpoint", "timeout", "env", "service"} {
				if cmd.Flags().Changed(n) {
					f.appSpecific = append(f.appSpecific, n)
				}
			}
			plans, err := k.pushPlans(args, f, cmd)
			if err != nil {
				return err
			}
			cl, err := k.client(true)
			if err != nil {
				return err
			}
			for _, p := range plans {
				if err := k.pushApp(cmd.Context(), cl, p, f.noStart, f.noWait); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	fl := push.Flags()
	fl.StringVarP(&f.manifest, "manifest", "f", "", "manifest file (default: manifest.yml in --path or the current directory, if present)")
	fl.BoolVar(&f.noManifest, "no-manifest", false, "ignore any manifest.yml")
	fl.StringVarP(&f.path, "path", "p", "", "directory holding the app's files (default: .)")
	fl.StringArrayVar(&f.urls, "url", nil, "URL to route to the app (repeatable)")
	fl.BoolVar(&f.noRoute, "no-route", false, "do not route any URL to the app")
	fl.IntVarP(&f.instances, "instances", "i", 1, "number of instances")
	fl.StringVarP(&f.mem, "mem", "m", "", "memory per instance (64M, 256M, 1G, ...)")
	fl.BoolVar(&f.noStart, "no-start", false, "upload but do not start the app")
	fl.StringVarP(&f.buildpack, "buildpack", "b", "", "buildpack to stage with (default: detected)")
	fl.StringVarP(&f.command, "command", "c", "", "start command (default: the buildpack's)")
	fl.StringVarP(&f.hcType, "health-check-type", "u", "", "health check: port, http, process or none")
	fl.StringVar(&f.hcEndpoint, "health-check-http-endpoint", "", "path the http health check requests")
	fl.IntVarP(&f.timeout, "timeout", "t", 0, "seconds an instance may take to start (default 120)")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	fl.StringArrayVarP(&f.services, "service", "s", nil, "service instance to bind (repeatable)")
	fl.BoolVar(&f.noWait, "no-wait", false, "do not wait for staging and start")

	var updPath string
	update := &cobra.Command{
		Use:   "update NAME",
		Short: "Upload an app's files again (it is restaged and, if started, rolled over)",
		Args:  exactArgs(1),
		RunE: k.withApp(func(ctx context.Context, cl *client.Client, name string, _ []string) error {
			a, err := cl.App(ctx, name)
			if err != nil {
				return err
			}
			if updPath == "" {
				updPath = "."
			}
			return k.deploy(ctx, cl, a, updPath, a.State != "STARTED", defaultStartTimeout, false)
		}),
	}
	update.Flags().StringVarP(&updPath, "path", "p", "", "directory holding the app's files (default: .)")
	return []*cobra.Command{push, update}
}

// pushPlans merges the manifest and the flags into the apps to push.
func (k *cli) pushPlans(args []string, f pushFlags, cmd *cobra.Command) ([]manifest.App, error) {
	m, err := k.findManifest(f)
	if err != nil {
		return nil, err
	}
	var apps []manifest.App
	switch {
	case len(args) == 1 && len(m.Applications) > 0:
		a, ok := m.Find(args[0])
		if !ok && len(m.Applications) == 1 && m.Applications[0].Name == "" {
			a, ok = m.Applications[0], true
		}
		if !ok {
			return nil, usagef("app %s is not in the manifest", args[0])
		}
		apps = []manifest.App{a}
	case len(args) == 1:
		apps = []manifest.App{{Name: args[0]}}
	case len(m.Applications) > 0:
		apps = m.Applications
	default:
		return nil, usagef("push needs an app NAME or a manifest.yml")
	}
	if len(apps) > 1 && len(f.appSpecific) > 0 {
		return nil, usagef("--%s cannot apply to the %d apps of the manifest; name one app", f.appSpecific[0], len(apps))
	}
	for i := range apps {
		if err := applyFlags(&apps[i], f, cmd); err != nil {
			return nil, err
		}
	}
	return apps, nil
}

// findManifest loads the manifest the flags name or find.
func (k *cli) findManifest(f pushFlags) (manifest.Manifest, error) {
	if f.noManifest {
		return manifest.Manifest{}, nil
	}
	p := f.manifest
	if p == "" {
		dir := f.path
		if dir == "" {
			dir = "."
		}
		p = filepath.Join(dir, "manifest.yml")
		if _, err := os.Stat(p); err != nil {
			return manifest.Manifest{}, nil
		}
	}
	m, err := manifest.Load(p)
	if errors.Is(err, manifest.ErrInvalid) || errors.Is(err, fs.ErrNotExist) {
		return m, withCode(exitUsage, err)
	}
	return m, err
}

// applyFlags lays the given flags over a manifest app.
func applyFlags(a *manifest.App, f pushFlags, cmd *cobra.Command) error {
	ch := cmd.Flags().Changed
	if ch("path") {
		a.Path = f.path
	}
	if a.Path == "" {
		a.Path = "."
	}
	if ch("url") {
		a.Routes = slices.Clone(f.urls)
	}
	if ch("no-route") {
		a.NoRoute = f.noRoute
	}
	if a.NoRoute {
		a.Routes = nil
	}
	if ch("instances") {
		if f.instances < 0 {
			return usagef("--instances must not be negative")
		}
		a.Instances = f.instances
	}
	if ch("mem") {
		mb, err := manifest.ParseMemory(f.mem)
		if err != nil {
			return usagef("--mem: %v", err)
		}
		a.MemoryMB = mb
	}
	if ch("buildpack") {
		a.Buildpack = f.buildpack
	}
	if ch("command") {
		a.Command = f.command
	}
	if ch("health-check-type") {
		switch f.hcType {
		case "port", "http", "process", "none":
		default:
			return usagef("--health-check-type must be port, http, process or none")
		}
		a.HealthCheckType = f.hcType
	}
	if ch("health-check-http-endpoint") {
		if !strings.HasPrefix(f.hcEndpoint, "/") {
			return usagef("--health-check-http-endpoint must start with /")
		}
		a.HealthCheckEndpoint = f.hcEndpoint
	}
	if ch("timeout") {
		if f.timeout <= 0 {
			return usagef("--timeout must be positive")
		}
		a.Timeout = f.timeout
	}
	for _, e := range f.env {
		key, val, ok := strings.Cut(e, "=")
		if !ok || key == "" {
			return usagef("--env %q is not KEY=VALUE", e)
		}
		if a.Env == nil {
			a.Env = map[string]string{}
		}
		a.Env[key] = val
	}
	for _, s := range f.services {
		if !slices.Contains(a.Services, s) {
			a.Services = append(a.Services, s)
		}
	}
	return nil
}

// defaultRoute is NAME.APPDOMAIN when the controller announces its app
// domain in /info, else NAME.DOMAIN when the target is api.DOMAIN, as the
// original CLI suggested; "" otherwise.
func (k *cli) defaultRoute(ctx context.Context, cl *client.Client, name string) string {
	if cl != nil {
		if info, err := cl.Info(ctx); err == nil && info.AppDomain != "" {
			return name + "." + info.AppDomain
		}
	}
	u, err := url.Parse(k.currentTarget())
	if err != nil {
		return ""
	}
	if domain, ok := strings.CutPrefix(u.Hostname(), "api."); ok && strings.Contains(domain, ".") {
		return name + "." + domain
	}
	return ""
}

// pushApp creates or updates one app and deploys its bits.
func (k *cli) pushApp(ctx context.Context, cl *client.Client, p manifest.App, noStart, noWait bool) error {
	a, err := cl.App(ctx, p.Name)
	switch {
	case isNotFound(err):
		a, err = k.createApp(ctx, cl, p)
	case err == nil:
		err = k.updateApp(ctx, cl, a, p)
		if err == nil {
			a, err = cl.App(ctx, p.Name)
		}
	}
	if err != nil {
		return err
	}
	timeout := defaultStartTimeout
	if p.Timeout > 0 {
		timeout = time.Duration(p.Timeout) * time.Second
	}
	return k.deploy(ctx, cl, a, p.Path, noStart, timeout, noWait)
}

func (k *cli) createApp(ctx context.Context, cl *client.Client, p manifest.App) (client.App, error) {
	routes := p.Routes
	if routes == nil && !p.NoRoute {
		if r := k.defaultRoute(ctx, cl, p.Name); r != "" {
			routes = []string{r}
		}
	}
	inst := p.Instances
	if inst == 0 {
		inst = 1
	}
	req := client.AppRequest{Name: p.Name, Buildpack: p.Buildpack, Command: p.Command, URIs: routes, Instances: inst,
		Memory: p.MemoryMB, Env: p.EnvList(), Services: p.Services}
	k.say("Creating %s\n", p.Name)
	if err := cl.CreateApp(ctx, req); err != nil {
		return client.App{}, err
	}
	if err := k.setHealthCheck(ctx, cl, p.Name, healthOf(p)); err != nil {
		return client.App{}, err
	}
	return cl.App(ctx, p.Name)
}

// healthOf is the health check part of a manifest app.
func healthOf(p manifest.App) healthCheck {
	var h healthCheck
	if p.HealthCheckType != "" {
		h.Type = &p.HealthCheckType
	}
	if p.HealthCheckEndpoint != "" {
		h.Endpoint = &p.HealthCheckEndpoint
	}
	if p.Timeout > 0 {
		h.Timeout = &p.Timeout
	}
	return h
}

// updateApp brings an existing app's settings in line with p; settings p
// leaves unset are kept.
func (k *cli) updateApp(ctx context.Context, cl *client.Client, a client.App, p manifest.App) error {
	k.say("Updating %s\n", p.Name)
	u := client.AppUpdate{MetaVersion: client.Ptr(a.Meta.Version)}
	if p.Instances > 0 && p.Instances != a.Instances {
		u.Instances = client.Ptr(p.Instances)
	}
	if p.MemoryMB > 0 && p.MemoryMB != a.Resources.Memory {
		u.Resources = client.SetMemory(p.MemoryMB).Resources
	}
	if (p.Routes != nil || p.NoRoute) && !slices.Equal(p.Routes, a.URIs) {
		r := slices.Clone(p.Routes)
		if r == nil {
			r = []string{}
		}
		u.URIs = &r
	}
	if env := setEnv(a.Env, p.EnvList()); !slices.Equal(env, a.Env) {
		u.Env = &env
	}
	if u.Instances != nil || u.Resources != nil || u.URIs != nil || u.Env != nil {
		if err := cl.UpdateApp(ctx, a.Name, u); err != nil {
			return err
		}
	}
	for _, s := range p.Services {
		if !slices.Contains(a.Services, s) {
			if err := cl.BindService(ctx, a.Name, s); err != nil {
				return fmt.Errorf("bind %s: %w", s, err)
			}
		}
	}
	st := map[string]string{}
	if p.Buildpack != "" && p.Buildpack != a.Staging.Buildpack {
		st["buildpack"] = p.Buildpack
	}
	if p.Command != "" && p.Command != a.Staging.Command {
		st["command"] = p.Command
	}
	if len(st) > 0 {
		if err := k.rawCall(ctx, cl, "PUT", []string{"apps", a.Name}, map[string]any{"staging": st}, nil); err != nil {
			return err
		}
	}
	return k.setHealthCheck(ctx, cl, a.Name, healthOf(p))
}

// deploy uploads dir as the app's bits, streams the staging log, and
// starts the app (or waits for the rollout of a started one).
func (k *cli) deploy(ctx context.Context, cl *client.Client, a client.App, dir string, noStart bool, timeout time.Duration, noWait bool) error {
	crashes, err := cl.Crashes(ctx, a.Name)
	if err != nil {
		return err
	}
	if err := k.upload(ctx, cl, a.Name, dir); err != nil {
		return err
	}
	if noWait {
		if !noStart && a.State != "STARTED" {
			return cl.Start(ctx, a.Name)
		}
		return nil
	}
	if err := k.followStaging(ctx, cl, a.Name); err != nil {
		return err
	}
	if noStart {
		if st, err := cl.App(ctx, a.Name); err == nil && st.PackageState == "FAILED" {
			return fmt.Errorf("%s: %w: %s", a.Name, errStaging, st.StagingError)
		}
		k.say("Uploaded %s (not started)\n", a.Name)
		return nil
	}
	if a.State != "STARTED" {
		if err := cl.Start(ctx, a.Name); err != nil {
			return err
		}
		k.say("Starting %s\n", a.Name)
	}
	if err := k.waitStarted(ctx, cl, a.Name, len(crashes), timeout); err != nil {
		return err
	}
	if k.json {
		st, err := cl.App(ctx, a.Name)
		if err != nil {
			return err
		}
		return printJSON(k.out, st)
	}
	k.say("%s is running\n", a.Name)
	return nil
}

// upload fingerprints dir, asks the controller which files it has and
// sends the others, drawing the packing progress.
func (k *cli) upload(ctx context.Context, cl *client.Client, name, dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return usagef("app path: %v", err)
	}
	if !info.IsDir() {
		return usagef("app path %s is not a directory", dir)
	}
	files, err := client.Fingerprint(dir)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	have, err := cl.MatchResources(ctx, files)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, h := range have {
		known[h.Fn] = true
	}
	bar := newProgress(k.progressOut(), k.tty(), "Uploading "+name, total)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var done int64
	added := 0
	for _, f := range files {
		if !known[f.Fn] {
			if err := addToZip(zw, dir, f); err != nil {
				return err
			}
			added++
		}
		done += f.Size
		bar.set(done)
	}
	if added == 0 {
		// An upload must be a zip; the original CLI sent an empty marker.
		if _, err := zw.Create(".__empty__"); err != nil {
			return fmt.Errorf("zip: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("zip: %w", err)
	}
	if total == 0 {
		bar.total = 1
		bar.set(1)
	}
	sent, err := cl.Upload(ctx, name, &buf, have)
	if err != nil {
		bar.done("FAILED")
		return err
	}
	bar.done(fmt.Sprintf("OK (%d files, %s; %d already on the controller; sent %s)", len(files), humanBytes(total), len(have), humanBytes(sent)))
	return nil
}

func addToZip(zw *zip.Writer, dir string, f client.Resource) error {
	src, err := os.Open(filepath.Join(dir, filepath.FromSlash(f.Fn)))
	if err != nil {
		return fmt.Errorf("read app: %w", err)
	}
	defer src.Close()
	h := &zip.FileHeader{Name: f.Fn, Method: zip.Deflate}
	h.SetMode(fs.FileMode(f.Mode))
	w, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("zip %s: %w", f.Fn, err)
	}
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("zip %s: %w", f.Fn, err)
	}
	return nil
}

// followStaging streams the staging log until staging ends. The
// controller opens the log when an upload changes the package, so the log
// read right after the upload is this staging's; when there is none the
// package was unchanged or staging already ended.
func (k *cli) followStaging(ctx context.Context, cl *client.Client, name string) error {
	logw := k.out
	switch {
	case k.quiet:
		logw = io.Discard
	case k.json:
		logw = k.err // keep stdout parseable
	}
	sctx, cancel := context.WithTimeout(ctx, stagingTimeout)
	defer cancel()
	sc, err := k.streamClient(cl)
	if err != nil {
		return err
	}
	if err := sc.StagingLog(sctx, name, true, logw); err != nil && !isNotFound(err) {
		return err
	}
	_, err = k.pollApp(sctx, cl, name, func(a client.App) bool { return a.PackageState != "PENDING" })
	return err
}
