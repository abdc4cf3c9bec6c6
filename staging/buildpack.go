package staging

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// Buildpack turns an application's source into a runnable app, following
// the buildpack protocol: Detect says whether it applies, Compile builds the
// app in place, Release names the start command. Built-in buildpacks
// implement it in Go; External runs a bin/detect, bin/compile, bin/release
// directory the same way.
//
// All three steps run against a Build, whose container holds the app in
// Build.AppDir. They are called at most once per staging, in order, from
// one goroutine.
type Buildpack interface {
	// Name is the key users select the buildpack by ("go", "nodejs", ...).
	Name() string
	// Detect reports whether the buildpack applies to the app and, if so,
	// the name to record as the detected buildpack (for example
	// "go 1.26"). A false result is not an error.
	Detect(ctx context.Context, b *Build) (detected string, ok bool, err error)
	// Compile builds the app in Build.AppDir, using Build.CacheDir to keep
	// files between stagings of the same app. Failures that are the app's
	// fault should wrap an *ExitError or describe what is missing; the
	// stager turns them into a *CompileError.
	Compile(ctx context.Context, b *Build) error
	// Release returns the app's process types; "web" is the start command
	// unless the app's Procfile overrides it.
	Release(ctx context.Context, b *Build) (Release, error)
}

// Release is what a buildpack's release step reports.
type Release struct {
	// ProcessTypes maps process type names ("web", "worker") to the shell
	// command that starts them in the app directory.
	ProcessTypes map[string]string `yaml:"default_process_types"`
	// Version is the buildpack's version, if known.
	Version string `yaml:"-"`
}

// Container directories, relative to the staging container's root. They
// are kept short and fixed so buildpacks and logs show stable paths.
const (
	appDir        = "app"
	cacheDir      = "cache"
	homeDir       = "home"
	tmpDir        = "tmp"
	buildpacksDir = "buildpacks"
)

// Build is one staging in progress, as buildpacks see it: the container,
// the application's source, its environment, and the staging log.
type Build struct {
	// Container is the staging container.
	Container warden.Container
	// Source holds the application package's files (read-only), for
	// detecting without a round trip to the container.
	Source fs.FS
	// AppDir is the directory holding the app, as processes in the
	// container see it (an absolute path); compile in place there.
	AppDir string
	// CacheDir is the app's build cache directory, as processes see it. Its
	// contents survive to the next staging of the same app.
	CacheDir string
	// Env is the environment of build processes ("KEY=value"): the
	// platform's (PATH, HOME, TMPDIR, ...) then the app's.
	Env []string
	// Stack is the stack being staged for.
	Stack string
	// Memory and Disk are the app's limits in bytes (0 = unknown), for
	// buildpacks that tune the app's runtime.
	Memory, Disk uint64

	root      string // how processes see the container root ("" = "/")
	log       *logWriter
	stager    *Stager
	installed map[string]bool // external buildpacks streamed in
}

// Path returns how processes in the container see the container path p
// (slash-separated, relative to the container root): on backends that keep
// container files on the host (warden/process) it is a host path.
func (b *Build) Path(p string) string {
	if b.root == "" {
		return "/" + strings.TrimPrefix(path.Clean("/"+p), "/")
	}
	return filepath.Join(b.root, filepath.FromSlash(p))
}

// Logf writes one line to the staging log, prefixed by "-----> " as
// buildpacks conventionally mark their steps.
func (b *Build) Logf(format string, args ...any) {
	fmt.Fprintf(b.log, "-----> "+format+"\n", args...)
}

// Log returns the staging log, for streaming a tool's own output. Writes
// are split into lines.
func (b *Build) Log() io.Writer { return b.log }

// RunOptions adjust Build.Run.
type RunOptions struct {
	// Dir is the working directory (a path as processes see it); empty
	// means AppDir.
	Dir string
	// Env is added to Build.Env (and wins over it).
	Env []string
	// Stdin, if set, is the process's input.
	Stdin io.Reader
	// Stdout, if set, receives standard output instead of the log.
	Stdout io.Writer
}

// Run runs path with args in the container, output going to the staging
// log, and waits for it. A non-zero exit returns an *ExitError.
func (b *Build) Run(ctx context.Context, opts RunOptions, path string, args ...string) error {
	dir := opts.Dir
	if dir == "" {
		dir = b.AppDir
	}
	stdout := opts.Stdout
	if stdout == nil {
		stdout = b.log
	}
	spec := warden.ProcessSpec{
		Path: path,
		Args: args,
		Env:  warden.MergeEnv(b.Env, opts.Env),
		Dir:  b.containerPath(dir),
	}
	proc, err := b.Container.Run(ctx, spec, warden.ProcessIO{Stdin: opts.Stdin, Stdout: stdout, Stderr: b.log})
	if err != nil {
		return fmt.Errorf("staging: run %s: %w", path, err)
	}
	status, err := proc.Wait(ctx)
	if err != nil {
		return fmt.Errorf("staging: wait for %s: %w", path, err)
	}
	if status != 0 {
		return &ExitError{Command: append([]string{path}, args...), Status: status}
	}
	return nil
}

// Output runs path like Run and returns its standard output, trimmed of
// surrounding white space.
func (b *Build) Output(ctx context.Context, path string, args ...string) (string, error) {
	var out bytes.Buffer
	err := b.Run(ctx, RunOptions{Stdout: &limitedBuffer{buf: &out, max: 1 << 20}}, path, args...)
	return strings.TrimSpace(out.String()), err
}

// containerPath maps a path as processes see it back to a container path.
func (b *Build) containerPath(p string) string {
	if b.root != "" {
		if rel, err := filepath.Rel(b.root, p); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return p
}

// WriteFile writes data to the file name (a path relative to AppDir,
// parent directories created) with the given permissions.
func (b *Build) WriteFile(ctx context.Context, name string, data []byte, mode fs.FileMode) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	clean, err := warden.CleanPath(name)
	if err != nil {
		return fmt.Errorf("staging: write %s: %w", name, err)
	}
	var dirs []string
	for d := path.Dir(clean); d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := tw.WriteHeader(&tar.Header{Name: dirs[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Now()}); err != nil {
			return fmt.Errorf("staging: write %s: %w", name, err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: clean, Typeflag: tar.TypeReg, Mode: int64(mode.Perm()), Size: int64(len(data)), ModTime: time.Now()}); err != nil {
		return fmt.Errorf("staging: write %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("staging: write %s: %w", name, err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("staging: write %s: %w", name, err)
	}
	if err := b.Container.StreamIn(ctx, appDir, &buf); err != nil {
		return fmt.Errorf("staging: write %s: %w", name, err)
	}
	return nil
}

// ReadFile reads the file name (relative to AppDir) from the container,
// up to max bytes.
func (b *Build) ReadFile(ctx context.Context, name string, max int64) ([]byte, error) {
	clean, err := warden.CleanPath(name)
	if err != nil {
		return nil, fmt.Errorf("staging: read %s: %w", name, err)
	}
	rc, err := b.Container.StreamOut(ctx, path.Join(appDir, clean))
	if err != nil {
		return nil, fmt.Errorf("staging: read %s: %w", name, err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("staging: read %s: %w", name, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("staging: read %s: not a regular file", name)
	}
	if h.Size > max {
		return nil, fmt.Errorf("staging: read %s: %d bytes, more than %d: %w", name, h.Size, max, ErrTooLarge)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("staging: read %s: %w", name, err)
	}
	return data, nil
}

// LookPath returns the absolute path of the program name as build
// processes find it on their PATH, or an error saying it is missing.
func (b *Build) LookPath(ctx context.Context, name string) (string, error) {
	out, err := b.Output(ctx, "/bin/sh", "-c", `command -v "$1"`, "sh", name)
	if err != nil || !strings.HasPrefix(out, "/") {
		return "", fmt.Errorf("staging: %s is not installed on the staging host (PATH=%s)", name, b.lookupEnv("PATH"))
	}
	return out, nil
}

func (b *Build) lookupEnv(key string) string {
	v, _ := warden.LookupEnv(b.Env, key)
	return v
}

// limitedBuffer keeps at most max bytes and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
