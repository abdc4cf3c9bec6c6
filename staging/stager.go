// Package staging turns an uploaded application package into a droplet, the
// runnable form a DEA starts (see staging/droplet for the format).
//
// A Stager validates the package (a zip; see OpenPackage), creates a warden
// container with the app's memory and disk limits, streams the package and
// the app's previous build cache into it, and runs the buildpack protocol:
// detect (buildpacks tried in order, first match wins, or the one the user
// chose), compile, release. A Procfile "web:" line overrides the start
// command. The compiled app directory is then packed as a droplet, written
// to the caller with its SHA-1, and the build cache is written back for the
// next staging of the same app. The staging log streams line by line to
// the caller while this happens.
//
// # Buildpacks
//
// Built-in buildpacks, written in Go against the Buildpack interface, cover
// Go modules ("go"), Node.js ("nodejs"), Python without third-party
// packages ("python"), static sites ("static") and prebuilt binaries with a
// Procfile ("binary"); Builtins lists them in detection order. They use the
// tools of the staging host as build processes find them on Config.Path
// (go, node and npm, python3), so droplets refer to those tools by absolute
// path through .profile.d scripts: run droplets on hosts laid out like the
// stager's. External buildpacks (directories or zip/tgz archives holding
// bin/detect, bin/compile and bin/release) run inside the container by the
// protocol the ecosystem uses (see External).
//
// The static buildpack needs no web server in the droplet's stack: kiln
// embeds the Go source of a tiny file server, builds it once with the host's
// Go toolchain, caches the binary in Config.CacheDir under the hash of its
// source, and copies it into each static droplet as .kiln/bin/kiln-static.
//
// # Caching
//
// Request.CacheIn and Request.CacheOut carry an app's build cache as a
// gzipped tar (the controller stores it per app). The Go buildpack keeps
// GOMODCACHE and GOCACHE there (GOCACHE may instead be shared by all apps,
// see GoBuildpack.SharedBuildCache), the Node.js buildpack npm's cache, the
// Python buildpack pip's.
//
// # Failures
//
// Every error wraps one of ErrBadPackage, ErrNoBuildpack, ErrCompileFailed
// (as a *CompileError with exit status and last log lines),
// ErrReleaseInvalid, ErrTimeout or ErrTooLarge, except cancellation by the
// caller's context and failures of the container backend itself.
package staging

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
)

// Limits bound one staging. Zero fields take the Stager's defaults
// (Config.Limits); zero there means unlimited.
type Limits struct {
	// MemoryBytes bounds the staging container's memory.
	MemoryBytes uint64
	// DiskBytes bounds the staging container's files (source, cache,
	// compiled app).
	DiskBytes uint64
	// Timeout bounds the whole staging.
	Timeout time.Duration
	// MaxDropletBytes bounds the compressed droplet.
	MaxDropletBytes int64
	// MaxCacheBytes bounds the compressed build cache written to CacheOut;
	// a larger cache is dropped (logged, not an error).
	MaxCacheBytes int64
}

// Config configures a Stager.
type Config struct {
	// Stack names what droplets are built for; recorded in each droplet.
	Stack string
	// Buildpacks are tried in order during detection and can be chosen by
	// name. Nil means Builtins().
	Buildpacks []Buildpack
	// Path is the PATH of build processes: where buildpacks find go, node,
	// npm and python3 on the staging host.
	Path string
	// Env is added to the environment of every build process, before the
	// app's own (e.g. GOPROXY, npm_config_registry, PIP_INDEX_URL).
	Env []string
	// CacheDir is a host directory the stager keeps its own files in (the
	// static file server binary). Empty means a "kiln-staging" directory
	// in the system's temporary directory.
	CacheDir string
	// TempDir is where droplets are spooled when Request.Droplet is nil
	// and caches are spooled before being written; empty means the
	// system's temporary directory.
	TempDir string
	// GoTool is the host Go toolchain used to build the static file
	// server; empty means "go" on the stager's PATH, else
	// /usr/local/go/bin/go.
	GoTool string
	// Limits are the default limits of a staging.
	Limits Limits
	// Package bounds application packages.
	Package PackageLimits
	// MaxConcurrent is the number of stagings run at once; more wait.
	MaxConcurrent int
	// LogTailLines is how many log lines a CompileError carries.
	LogTailLines int
	// StopGrace is how long build processes get to exit after SIGTERM
	// when a staging is abandoned.
	StopGrace time.Duration
	// Registerer, if not nil, receives the stager's metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config with the defaults: built-in buildpacks,
// the usual PATH with the Go toolchain's default install directory, 1 GiB
// of memory and 2 GiB of disk per staging, 15 minutes (the original
// controller allowed 2), 1 GiB droplets, 1 GiB caches and two concurrent
// stagings (staging is CPU-bound; more than the host's cores only slows
// each down).
func DefaultConfig() Config {
	return Config{
		Stack: "linux",
		Path:  "/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		Limits: Limits{
			MemoryBytes:     1 << 30,
			DiskBytes:       2 << 30,
			Timeout:         15 * time.Minute,
			MaxDropletBytes: 1 << 30,
			MaxCacheBytes:   1 << 30,
		},
		Package:       DefaultPackageLimits(),
		MaxConcurrent: 2,
		LogTailLines:  20,
		StopGrace:     5 * time.Second,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Stack == "":
		return errors.New("staging: config: empty Stack")
	case c.Path == "":
		return errors.New("staging: config: empty Path")
	case c.MaxConcurrent < 1:
		return errors.New("staging: config: MaxConcurrent must be at least 1")
	case c.LogTailLines < 0 || c.StopGrace < 0:
		return errors.New("staging: config: negative LogTailLines or StopGrace")
	case c.Package.MaxFiles < 0 || c.Package.MaxBytes < 0:
		return errors.New("staging: config: negative package limits")
	}
	seen := map[string]bool{}
	for _, bp := range c.Buildpacks {
		if bp == nil || bp.Name() == "" {
			return errors.New("staging: config: nil or unnamed buildpack")
		}
		if seen[bp.Name()] {
			return fmt.Errorf("staging: config: two buildpacks named %q", bp.Name())
		}
		seen[bp.Name()] = true
	}
	return nil
}

// Request is one staging to do.
type Request struct {
	// AppID identifies the app; it labels the container and logs.
	AppID string
	// Name is the app's name, for logs.
	Name string
	// Package is the app's package, a zip of PackageSize bytes.
	Package     io.ReaderAt
	PackageSize int64
	// Buildpack, if not empty, names the buildpack to use instead of
	// detecting one.
	Buildpack string
	// Env is the app's environment ("KEY=value"), visible to build
	// processes.
	Env []string
	// Stack overrides Config.Stack when not empty.
	Stack string
	// Limits override Config.Limits field by field.
	Limits Limits
	// CacheIn is the app's build cache from a previous CacheOut (a gzipped
	// tar), or nil. An unreadable cache is logged and ignored.
	CacheIn io.Reader
	// LogWriter receives the staging log line by line; nil discards it.
	LogWriter io.Writer
	// Droplet receives the droplet. Nil means a temporary file, whose path
	// Result.DropletPath reports (the caller removes it). After a failed
	// staging what was written to Droplet is not a usable droplet.
	Droplet io.Writer
	// CacheOut, if not nil, receives the updated build cache.
	CacheOut io.Writer
}

// Result describes a successful staging.
type Result struct {
	// DetectedBuildpack is the detected buildpack's description.
	DetectedBuildpack string
	// Buildpack is the name of the buildpack used.
	Buildpack string
	// BuildpackVersion is the buildpack's version, if it reported one.
	BuildpackVersion string
	// StartCommand starts the web process (see droplet.Launch).
	StartCommand string
	// ProcessTypes are all process types, "web" included.
	ProcessTypes map[string]string
	// Stack is the stack the droplet was built for.
	Stack string
	// DropletSHA1 and DropletSize identify the droplet written.
	DropletSHA1 string
	DropletSize int64
	// DropletPath is the temporary file holding the droplet when
	// Request.Droplet was nil.
	DropletPath string
	// CacheSize is the size of the cache written to CacheOut (0 if none).
	CacheSize int64
	// Duration is how long the staging took.
	Duration time.Duration
}

// Stager stages applications in warden containers. It is safe for
// concurrent use.
type Stager struct {
	cfg     Config
	backend warden.Backend
	log     *slog.Logger
	sem     chan struct{}
	metrics *metrics

	staticMu  sync.Mutex
	staticBin string // cached static server binary, once built
}

// NewStager returns a Stager that runs stagings in containers of backend,
// or an error if cfg is invalid (see Config.Validate), backend is nil, or
// the metrics cannot be registered with cfg.Registerer. A nil logger
// discards logs. The Stager does not own backend.
func NewStager(cfg Config, backend warden.Backend, logger *slog.Logger) (*Stager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if backend == nil {
		return nil, errors.New("staging: nil warden.Backend")
	}
	if cfg.Buildpacks == nil {
		cfg.Buildpacks = Builtins()
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Stager{
		cfg:     cfg,
		backend: backend,
		log:     logger,
		sem:     make(chan struct{}, cfg.MaxConcurrent),
		metrics: m,
	}, nil
}

// New is NewStager for configurations known to be valid, as a program's
// own assembly of its parts is: it panics, with a message that starts
// "staging.New: " and gives NewStager's error, where NewStager would
// fail. Use NewStager for a Config built from outside input.
func New(cfg Config, backend warden.Backend, logger *slog.Logger) *Stager {
	s, err := NewStager(cfg, backend, logger)
	if err != nil {
		panic("staging.New: " + err.Error())
	}
	return s
}

// Stage stages req and returns what it produced. It blocks until the
// staging ends, at most the request's timeout. See the package doc for
// the errors it returns.
func (s *Stager) Stage(ctx context.Context, req Request) (res Result, err error) {
	start := time.Now()
	lim := s.limits(req.Limits)
	tctx, cancel := context.WithTimeoutCause(ctx, nonZero(lim.Timeout), ErrTimeout)
	defer cancel()
	defer func() {
		err = s.classify(ctx, tctx, lim, err)
		s.metrics.observe(err, time.Since(start))
		if err != nil {
			s.log.Warn("staging-failed", "app", req.AppID, "name", req.Name, "error", err)
		}
	}()
	if req.Package == nil {
		return Result{}, fmt.Errorf("%w: no package", ErrBadPackage)
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-tctx.Done():
		return Result{}, context.Cause(tctx)
	}
	pkg, err := OpenPackage(req.Package, req.PackageSize, s.cfg.Package)
	if err != nil {
		return Result{}, err
	}
	logw := newLogWriter(req.LogWriter, s.cfg.LogTailLines)
	defer logw.Flush()
	s.log.Info("staging-started", "app", req.AppID, "name", req.Name, "files", len(pkg.names), "bytes", pkg.Size())
	res, err = s.stage(tctx, req, pkg, lim, logw)
	if err != nil {
		var ce *CompileError
		if errors.As(err, &ce) && ce.LastLines == nil {
			logw.Flush()
			ce.LastLines = logw.Tail()
		}
		return Result{}, err
	}
	res.Duration = time.Since(start)
	fmt.Fprintf(logw, "-----> Uploaded droplet (%s)\n", humanBytes(res.DropletSize))
	s.log.Info("staging-finished", "app", req.AppID, "buildpack", res.Buildpack, "droplet-sha1", res.DropletSHA1,
		"droplet-bytes", res.DropletSize, "duration", res.Duration)
	return res, nil
}

// classify maps a failure caused by the staging timeout to ErrTimeout and
// a container's disk limit to ErrTooLarge.
func (s *Stager) classify(ctx, tctx context.Context, lim Limits, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() == nil && tctx.Err() != nil && !errors.Is(err, ErrTimeout) {
		return fmt.Errorf("%w (%v): %w", ErrTimeout, lim.Timeout, err)
	}
	if errors.Is(err, warden.ErrLimitExceeded) && !errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}

func (s *Stager) limits(l Limits) Limits {
	d := s.cfg.Limits
	if l.MemoryBytes == 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.DiskBytes == 0 {
		l.DiskBytes = d.DiskBytes
	}
	if l.Timeout == 0 {
		l.Timeout = d.Timeout
	}
	if l.MaxDropletBytes == 0 {
		l.MaxDropletBytes = d.MaxDropletBytes
	}
	if l.MaxCacheBytes == 0 {
		l.MaxCacheBytes = d.MaxCacheBytes
	}
	return l
}

// nonZero turns "unlimited" into a very long timeout.
func nonZero(d time.Duration) time.Duration {
	if d <= 0 {
		return 100 * 365 * 24 * time.Hour
	}
	return d
}

func (s *Stager) stage(ctx context.Context, req Request, pkg *Package, lim Limits, logw *logWriter) (Result, error) {
	c, err := s.backend.Create(ctx, warden.ContainerSpec{
		Handle:     "staging-" + sanitizeHandle(req.AppID) + "-" + randomHex(6),
		Properties: warden.Properties{"kiln.role": "staging", "kiln.app-id": req.AppID},
		Limits:     warden.Limits{MemoryBytes: lim.MemoryBytes, DiskBytes: lim.DiskBytes},
	})
	if err != nil {
		return Result{}, fmt.Errorf("staging: create container: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.backend.Destroy(dctx, c.Handle()); err != nil {
			s.log.Warn("staging-destroy-failed", "container", c.Handle(), "error", err)
		}
	}()
	info, err := c.Info(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("staging: container info: %w", err)
	}
	stack := s.cfg.Stack
	if req.Stack != "" {
		stack = req.Stack
	}
	b := &Build{
		Container: c,
		Source:    pkg.FS(),
		Stack:     stack,
		Memory:    lim.MemoryBytes,
		Disk:      lim.DiskBytes,
		root:      info.Path,
		log:       logw,
		stager:    s,
	}
	b.AppDir, b.CacheDir = b.Path(appDir), b.Path(cacheDir)
	b.Env = s.buildEnv(b, req)

	fmt.Fprintf(logw, "-----> Downloaded app package (%s)\n", humanBytes(pkg.Size()))
	if err := s.streamIn(ctx, b, pkg, req.CacheIn); err != nil {
		return Result{}, err
	}
	bp, detected, err := s.detect(ctx, b, req.Buildpack)
	if err != nil {
		return Result{}, err
	}
	if err := s.compile(ctx, b, bp, c); err != nil {
		return Result{}, err
	}
	rel, err := s.release(ctx, b, bp)
	if err != nil {
		return Result{}, err
	}
	dinfo := droplet.Info{
		DetectedBuildpack: detected,
		Buildpack:         bp.Name(),
		BuildpackVersion:  rel.Version,
		StartCommand:      rel.ProcessTypes["web"],
		Stack:             stack,
		ProcessTypes:      rel.ProcessTypes,
	}
	fmt.Fprintf(logw, "-----> Start command: %s\n", dinfo.StartCommand)
	res := Result{
		DetectedBuildpack: detected,
		Buildpack:         bp.Name(),
		BuildpackVersion:  rel.Version,
		StartCommand:      dinfo.StartCommand,
		ProcessTypes:      rel.ProcessTypes,
		Stack:             stack,
	}
	if err := s.writeDroplet(ctx, c, req, dinfo, lim, &res); err != nil {
		return Result{}, err
	}
	if req.CacheOut != nil {
		n, err := s.writeCache(ctx, c, req.CacheOut, lim, logw)
		if err != nil {
			return Result{}, err
		}
		res.CacheSize = n
	}
	return res, nil
}

// buildEnv is the environment of build processes: the platform's, the
// stager's extra variables, the app's; PATH, HOME and TMPDIR stay the
// platform's.
func (s *Stager) buildEnv(b *Build, req Request) []string {
	env := []string{"LANG=C.UTF-8"}
	if b.Memory > 0 {
		env = append(env, "MEMORY_LIMIT="+strconv.FormatUint(b.Memory>>20, 10)+"m")
	}
	env = warden.MergeEnv(env, s.cfg.Env)
	env = warden.MergeEnv(env, req.Env)
	return warden.MergeEnv(env, []string{
		"PATH=" + s.cfg.Path,
		"HOME=" + b.Path(homeDir),
		"TMPDIR=" + b.Path(tmpDir),
		"STACK=" + b.Stack,
	})
}

// streamIn creates the container's directories and streams the package
// and the cache in.
func (s *Stager) streamIn(ctx context.Context, b *Build, pkg *Package, cacheIn io.Reader) error {
	c := b.Container
	var dirs strings.Builder
	tw := tar.NewWriter(&dirs)
	for _, d := range []string{appDir, cacheDir, homeDir, tmpDir, buildpacksDir} {
		if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
			return fmt.Errorf("staging: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if err := c.StreamIn(ctx, ".", strings.NewReader(dirs.String())); err != nil {
		return fmt.Errorf("staging: create directories: %w", err)
	}
	pr, pw := io.Pipe()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := pkg.WriteTar(pw)
		pw.CloseWithError(err)
		return err
	})
	g.Go(func() error {
		err := c.StreamIn(gctx, appDir, pr)
		if err == nil {
			_, _ = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		if errors.Is(err, warden.ErrInvalidPath) || errors.Is(err, errors.ErrUnsupported) {
			return fmt.Errorf("%w: %w", ErrBadPackage, err)
		}
		if err != nil {
			return fmt.Errorf("staging: stream package into container: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if cacheIn == nil {
		return nil
	}
	if err := streamCacheIn(ctx, c, cacheIn); err != nil {
		b.Logf("Ignoring the build cache: %v", err)
		s.log.Warn("staging-cache-ignored", "container", c.Handle(), "error", err)
	} else {
		b.Logf("Restored build cache")
	}
	return nil
}

func streamCacheIn(ctx context.Context, c warden.Container, r io.Reader) error {
	br := bufio.NewReader(r)
	if _, err := br.Peek(1); errors.Is(err, io.EOF) {
		return nil // an empty cache
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fmt.Errorf("read cache: %w", err)
	}
	defer zr.Close()
	if err := c.StreamIn(ctx, cacheDir, zr); err != nil {
		return fmt.Errorf("restore cache: %w", err)
	}
	return nil
}

func (s *Stager) buildpack(name string) Buildpack {
	for _, bp := range s.cfg.Buildpacks {
		if bp.Name() == name {
			return bp
		}
	}
	return nil
}

func (s *Stager) detect(ctx context.Context, b *Build, choice string) (Buildpack, string, error) {
	if choice != "" {
		bp := s.buildpack(choice)
		if bp == nil {
			return nil, "", fmt.Errorf("%w: unknown buildpack %q", ErrNoBuildpack, choice)
		}
		detected, ok, err := bp.Detect(ctx, b)
		if err != nil {
			return nil, "", fmt.Errorf("staging: buildpack %s: detect: %w", bp.Name(), err)
		}
		if !ok || detected == "" {
			detected = bp.Name()
		}
		b.Logf("Using buildpack %s", bp.Name())
		return bp, detected, nil
	}
	for _, bp := range s.cfg.Buildpacks {
		detected, ok, err := bp.Detect(ctx, b)
		if err != nil {
			return nil, "", fmt.Errorf("staging: buildpack %s: detect: %w", bp.Name(), err)
		}
		if ok {
			if detected == "" {
				detected = bp.Name()
			}
			b.Logf("Detected %s app (buildpack %s)", detected, bp.Name())
			return bp, detected, nil
		}
	}
	names := make([]string, len(s.cfg.Buildpacks))
	for i, bp := range s.cfg.Buildpacks {
		names[i] = bp.Name()
	}
	b.Logf("No buildpack detected this app (tried %s)", strings.Join(names, ", "))
	return nil, "", fmt.Errorf("%w (tried %s)", ErrNoBuildpack, strings.Join(names, ", "))
}

func (s *Stager) compile(ctx context.Context, b *Build, bp Buildpack, c warden.Container) error {
	err := bp.Compile(ctx, b)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("staging: buildpack %s: compile: %w", bp.Name(), err)
	}
	if errors.Is(err, warden.ErrLimitExceeded) || errors.Is(err, ErrTooLarge) {
		return fmt.Errorf("%w: buildpack %s: compile: %w", ErrTooLarge, bp.Name(), err)
	}
	ce := &CompileError{Buildpack: bp.Name(), ExitStatus: -1, Reason: err.Error()}
	var xe *ExitError
	if errors.As(err, &xe) {
		ce.ExitStatus = xe.Status
	}
	if info, ierr := c.Info(ctx); ierr == nil {
		for _, ev := range info.Events {
			if ev == warden.EventOutOfMemory {
				ce.Reason = fmt.Sprintf("out of memory (limit %s): %v", humanBytes(int64(b.Memory)), err)
			}
		}
	}
	b.Logf("Compile failed: %s", ce.Reason)
	return ce
}

func (s *Stager) release(ctx context.Context, b *Build, bp Buildpack) (Release, error) {
	rel, err := bp.Release(ctx, b)
	if err != nil {
		if ctx.Err() != nil {
			return Release{}, fmt.Errorf("staging: buildpack %s: release: %w", bp.Name(), err)
		}
		return Release{}, fmt.Errorf("%w: buildpack %s: %w", ErrReleaseInvalid, bp.Name(), err)
	}
	procs := map[string]string{}
	for k, v := range rel.ProcessTypes {
		if v = strings.TrimSpace(v); v != "" {
			procs[k] = v
		}
	}
	data, err := b.ReadFile(ctx, "Procfile", 1<<20)
	switch {
	case err == nil:
		pf, perr := ParseProcfile(data)
		if perr != nil {
			return Release{}, fmt.Errorf("%w: %w", ErrReleaseInvalid, perr)
		}
		for k, v := range pf {
			procs[k] = v
		}
		if _, ok := pf["web"]; ok {
			b.Logf("Procfile sets the web command")
		}
	case errors.Is(err, warden.ErrNotFound):
	default:
		if ctx.Err() != nil {
			return Release{}, err
		}
		return Release{}, fmt.Errorf("%w: %w", ErrReleaseInvalid, err)
	}
	if procs["web"] == "" {
		b.Logf("No start command: the buildpack found none and there is no Procfile with a web: line")
		return Release{}, fmt.Errorf("%w: buildpack %s gave no web command and the app has no Procfile web: line", ErrReleaseInvalid, bp.Name())
	}
	rel.ProcessTypes = procs
	return rel, nil
}

func (s *Stager) writeDroplet(ctx context.Context, c warden.Container, req Request, info droplet.Info, lim Limits, res *Result) (err error) {
	out := req.Droplet
	if out == nil {
		f, ferr := os.CreateTemp(s.cfg.TempDir, "droplet-*.tgz")
		if ferr != nil {
			return fmt.Errorf("staging: droplet file: %w", ferr)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("staging: droplet file: %w", cerr)
			}
			if err != nil {
				os.Remove(f.Name())
				return
			}
			res.DropletPath = f.Name()
		}()
		out = f
	}
	rc, err := c.StreamOut(ctx, appDir)
	if err != nil {
		return fmt.Errorf("staging: read compiled app: %w", err)
	}
	defer rc.Close()
	sum, err := droplet.Pack(&capWriter{w: out, max: lim.MaxDropletBytes}, info, rc)
	if errors.Is(err, errCapped) {
		return fmt.Errorf("%w: droplet larger than %s", ErrTooLarge, humanBytes(lim.MaxDropletBytes))
	}
	if err != nil {
		return fmt.Errorf("staging: pack droplet: %w", err)
	}
	res.DropletSHA1, res.DropletSize = sum.SHA1, sum.Size
	return nil
}

// writeCache spools the gzipped cache to a temporary file and, if within
// the limit, copies it to w.
func (s *Stager) writeCache(ctx context.Context, c warden.Container, w io.Writer, lim Limits, logw *logWriter) (int64, error) {
	rc, err := c.StreamOut(ctx, cacheDir)
	if err != nil {
		return 0, fmt.Errorf("staging: read build cache: %w", err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.cfg.TempDir, "cache-*.tgz")
	if err != nil {
		return 0, fmt.Errorf("staging: cache file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	zw, err := gzip.NewWriterLevel(&capWriter{w: f, max: lim.MaxCacheBytes}, gzip.BestSpeed)
	if err != nil {
		return 0, fmt.Errorf("staging: %w", err)
	}
	_, err = io.Copy(zw, rc)
	if err == nil {
		err = zw.Close()
	}
	if errors.Is(err, errCapped) {
		fmt.Fprintf(logw, "-----> Build cache larger than %s: not saved\n", humanBytes(lim.MaxCacheBytes))
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("staging: pack build cache: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("staging: %w", err)
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return n, fmt.Errorf("staging: write build cache: %w", err)
	}
	fmt.Fprintf(logw, "-----> Saved build cache (%s)\n", humanBytes(n))
	return n, nil
}

var errCapped = errors.New("size cap reached")

// capWriter fails with errCapped once more than max bytes (0 = no cap)
// were written.
type capWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (c *capWriter) Write(p []byte) (int, error) {
	if c.max > 0 && c.n+int64(len(p)) > c.max {
		return 0, errCapped
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func sanitizeHandle(s string) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "app"
	}
	return b.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// hostCacheDir returns the stager's host cache directory, creating it.
func (s *Stager) hostCacheDir() (string, error) {
	dir := s.cfg.CacheDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "kiln-staging")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("staging: cache dir: %w", err)
	}
	return dir, nil
}
