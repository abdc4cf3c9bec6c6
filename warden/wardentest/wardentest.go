// Package wardentest is the conformance suite every warden.Backend passes,
// in the spirit of testing/fstest: an implementation's own tests call
//
//	wardentest.Run(t, func(t *testing.T) warden.Backend { ... })
//
// and get subtests for container lifecycle, file streaming (including
// path-traversal attempts), process environment, working directory, exit
// statuses, signals, stop-with-grace, killing whole process trees, limits,
// ports and concurrency.
//
// Processes are described as "sh -c SCRIPT" using only the small shell
// vocabulary that warden/fake interprets (exit, echo, pwd, sleep, trap ”,
// cat, ulimit -n, wait, "&", "&&", "> file"), so the same assertions hold
// for in-memory and real backends. Scripts name container files by paths
// relative to the working directory (the container root by default),
// because processes of a backend without a mount namespace (warden/process)
// see host paths. Backends must be able to run "sh" from their default
// PATH.
//
// The suite needs a backend whose memory-limit enforcement reacts within
// a few seconds (warden/process: set a short MemoryPollInterval).
package wardentest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/warden"
)

// timeout bounds every wait in the suite; reaching it is a failure.
const timeout = 20 * time.Second

// Run runs the conformance suite against backends made by newBackend. It
// is called once per subtest with that subtest's t, so the backend can be
// torn down with t.Cleanup; subtests run in parallel. Containers the suite
// creates are destroyed by the suite.
func Run(t *testing.T, newBackend func(t *testing.T) warden.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b warden.Backend)
	}{
		{"Lifecycle", testLifecycle},
		{"CreateErrors", testCreateErrors},
		{"ContainersMatch", testContainersMatch},
		{"DestroyIdempotent", testDestroyIdempotent},
		{"StreamRoundTrip", testStreamRoundTrip},
		{"StreamOutFile", testStreamOutFile},
		{"PathTraversal", testPathTraversal},
		{"LinksInside", testLinksInside},
		{"UnsupportedEntries", testUnsupportedEntries},
		{"DiskLimit", testDiskLimit},
		{"Env", testEnv},
		{"WorkingDir", testWorkingDir},
		{"ExitStatus", testExitStatus},
		{"Stdio", testStdio},
		{"OutputFiles", testOutputFiles},
		{"WaitContext", testWaitContext},
		{"Signals", testSignals},
		{"SignalIgnored", testSignalIgnored},
		{"StopGraceThenKill", testStopGraceThenKill},
		{"StopPrompt", testStopPrompt},
		{"StoppedContainer", testStoppedContainer},
		{"ProcessTree", testProcessTree},
		{"ProcessTreeIgnoringTerm", testProcessTreeIgnoringTerm},
		{"Limits", testLimits},
		{"MemoryLimit", testMemoryLimit},
		{"Ports", testPorts},
		{"Attach", testAttach},
		{"DestroyKills", testDestroyKills},
		{"Concurrent", testConcurrent},
		{"Capacity", testCapacity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newBackend(t))
		})
	}
}

// ctx returns a context bounded by the suite's timeout.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return c
}

// create makes a container destroyed at the end of the test.
func create(t *testing.T, b warden.Backend, spec warden.ContainerSpec) warden.Container {
	t.Helper()
	c, err := b.Create(ctx(t), spec)
	if err != nil {
		t.Fatalf("Create(%+v): %v", spec, err)
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := b.Destroy(dctx, c.Handle()); err != nil {
			t.Errorf("Destroy(%s): %v", c.Handle(), err)
		}
	})
	return c
}

// sh returns the spec of "sh -c script".
func sh(script string) warden.ProcessSpec {
	return warden.ProcessSpec{Path: "sh", Args: []string{"-c", script}}
}

// buffer is a goroutine-safe output sink that can be waited on.
type buffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newBuffer() *buffer { return &buffer{changed: make(chan struct{}, 1)} }

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.b.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor blocks until the output contains s.
func (b *buffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.changed:
		case <-deadline.C:
			t.Fatalf("output %q never contained %q", b.String(), s)
		}
	}
}

// run starts spec and returns the process with its stdout and stderr.
func run(t *testing.T, c warden.Container, spec warden.ProcessSpec, stdin io.Reader) (warden.Process, *buffer, *buffer) {
	t.Helper()
	out, errb := newBuffer(), newBuffer()
	p, err := c.Run(ctx(t), spec, warden.ProcessIO{Stdin: stdin, Stdout: out, Stderr: errb})
	if err != nil {
		t.Fatalf("Run(%+v): %v", spec, err)
	}
	return p, out, errb
}

// wait waits for p and returns its status.
func wait(t *testing.T, p warden.Process) int {
	t.Helper()
	st, err := p.Wait(ctx(t))
	if err != nil {
		t.Fatalf("Wait(%s): %v", p.ID(), err)
	}
	return st
}

// runWait runs spec to completion.
func runWait(t *testing.T, c warden.Container, spec warden.ProcessSpec) (int, string, string) {
	t.Helper()
	p, out, errb := run(t, c, spec, nil)
	st := wait(t, p)
	return st, out.String(), errb.String()
}

// entry is one tar entry to build.
type entry struct {
	name string
	body string // regular file contents
	dir  bool
	link string // symbolic link target
}

func tarOf(t *testing.T, entries ...entry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

// untar lists an archive as name -> "dir", "link:target" or the contents.
func untar(t *testing.T, r io.ReadCloser) map[string]string {
	t.Helper()
	defer r.Close()
	out := map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading streamed-out tar: %v", err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		switch h.Typeflag {
		case tar.TypeDir:
			out[name] = "dir"
		case tar.TypeSymlink:
			out[name] = "link:" + h.Linkname
		default:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(b)
		}
	}
}

func streamOut(t *testing.T, c warden.Container, src string) map[string]string {
	t.Helper()
	r, err := c.StreamOut(ctx(t), src)
	if err != nil {
		t.Fatalf("StreamOut(%q): %v", src, err)
	}
	return untar(t, r)
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got error %v, want one matching %v", what, err, target)
	}
}

func info(t *testing.T, c warden.Container) warden.ContainerInfo {
	t.Helper()
	i, err := c.Info(ctx(t))
	if err != nil {
		t.Fatalf("Info(%s): %v", c.Handle(), err)
	}
	return i
}

func testLifecycle(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{Handle: "life-1", Properties: warden.Properties{"app": "a1"}})
	if c.Handle() != "life-1" {
		t.Errorf("Handle() = %q, want life-1", c.Handle())
	}
	got, err := b.Lookup(ctx(t), "life-1")
	if err != nil || got.Handle() != "life-1" {
		t.Fatalf("Lookup = %v, %v", got, err)
	}
	i := info(t, c)
	if i.Handle != "life-1" || i.State != warden.StateActive || i.HostIP == "" {
		t.Errorf("Info = %+v, want handle life-1, active, a host IP", i)
	}
	if diff := cmp.Diff(warden.Properties{"app": "a1"}, i.Properties); diff != "" {
		t.Errorf("Info.Properties (-want +got):\n%s", diff)
	}
	gen := create(t, b, warden.ContainerSpec{})
	gen2 := create(t, b, warden.ContainerSpec{})
	if gen.Handle() == "" || gen.Handle() == gen2.Handle() {
		t.Errorf("generated handles %q and %q, want distinct non-empty", gen.Handle(), gen2.Handle())
	}
	if err := warden.ValidateHandle(gen.Handle()); err != nil {
		t.Errorf("generated handle: %v", err)
	}
	if err := c.Stop(ctx(t), time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if s := info(t, c).State; s != warden.StateStopped {
		t.Errorf("State after Stop = %q, want stopped", s)
	}
	if err := b.Destroy(ctx(t), "life-1"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	_, err = b.Lookup(ctx(t), "life-1")
	wantErr(t, "Lookup after Destroy", err, warden.ErrNotFound)
}

func testCreateErrors(t *testing.T, b warden.Backend) {
	create(t, b, warden.ContainerSpec{Handle: "dup"})
	_, err := b.Create(ctx(t), warden.ContainerSpec{Handle: "dup"})
	wantErr(t, "Create duplicate", err, warden.ErrExists)
	for _, h := range []string{"../x", ".hidden", "a/b", "sp ace", strings.Repeat("h", 129)} {
		_, err := b.Create(ctx(t), warden.ContainerSpec{Handle: h})
		wantErr(t, fmt.Sprintf("Create(%q)", h), err, warden.ErrInvalidSpec)
	}
	_, err = b.Lookup(ctx(t), "no-such")
	wantErr(t, "Lookup unknown", err, warden.ErrNotFound)
}

func testContainersMatch(t *testing.T, b warden.Backend) {
	create(t, b, warden.ContainerSpec{Handle: "m-a", Properties: warden.Properties{"app": "x", "idx": "0"}})
	create(t, b, warden.ContainerSpec{Handle: "m-b", Properties: warden.Properties{"app": "x", "idx": "1"}})
	create(t, b, warden.ContainerSpec{Handle: "m-c", Properties: warden.Properties{"app": "y"}})
	tests := []struct {
		match warden.Properties
		want  []string
	}{
		{nil, []string{"m-a", "m-b", "m-c"}},
		{warden.Properties{"app": "x"}, []string{"m-a", "m-b"}},
		{warden.Properties{"app": "x", "idx": "1"}, []string{"m-b"}},
		{warden.Properties{"app": "z"}, nil},
	}
	for _, tc := range tests {
		cs, err := b.Containers(ctx(t), tc.match)
		if err != nil {
			t.Fatalf("Containers(%v): %v", tc.match, err)
		}
		var got []string
		for _, c := range cs {
			got = append(got, c.Handle())
		}
		slices.Sort(got)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Containers(%v) (-want +got):\n%s", tc.match, diff)
		}
	}
}

func testDestroyIdempotent(t *testing.T, b warden.Backend) {
	c, err := b.Create(ctx(t), warden.ContainerSpec{Handle: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := b.Destroy(ctx(t), "gone"); err != nil {
			t.Errorf("Destroy #%d: %v", i+1, err)
		}
	}
	if err := b.Destroy(ctx(t), "never-existed"); err != nil {
		t.Errorf("Destroy unknown: %v", err)
	}
	_, err = c.Info(ctx(t))
	wantErr(t, "Info after Destroy", err, warden.ErrNotFound)
	_, err = c.Run(ctx(t), sh("exit 0"), warden.ProcessIO{})
	wantErr(t, "Run after Destroy", err, warden.ErrNotFound)
	err = c.StreamIn(ctx(t), "/", tarOf(t, entry{name: "f", body: "x"}))
	wantErr(t, "StreamIn after Destroy", err, warden.ErrNotFound)
	if c.Handle() != "gone" {
		t.Errorf("Handle after Destroy = %q", c.Handle())
	}
	// The handle is free again.
	create(t, b, warden.ContainerSpec{Handle: "gone"})
}

func testStreamRoundTrip(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	in := tarOf(t,
		entry{name: "app/", dir: true},
		entry{name: "app/start.sh", body: "#!/bin/sh\necho hi\n"},
		entry{name: "app/lib/deep/x.txt", body: "deep"},
		entry{name: "app/empty", body: ""},
		entry{name: "app/cur", link: "lib"},
	)
	if err := c.StreamIn(ctx(t), "/home/vcap", in); err != nil {
		t.Fatalf("StreamIn: %v", err)
	}
	want := map[string]string{
		"app":                "dir",
		"app/start.sh":       "#!/bin/sh\necho hi\n",
		"app/lib":            "dir",
		"app/lib/deep":       "dir",
		"app/lib/deep/x.txt": "deep",
		"app/empty":          "",
		"app/cur":            "link:lib",
	}
	if diff := cmp.Diff(want, streamOut(t, c, "/home/vcap")); diff != "" {
		t.Errorf("StreamOut(/home/vcap) (-want +got):\n%s", diff)
	}
	// Relative and absolute container paths are the same thing.
	if diff := cmp.Diff(want, streamOut(t, c, "home/vcap/")); diff != "" {
		t.Errorf("StreamOut(home/vcap/) (-want +got):\n%s", diff)
	}
	// Copying a tree into a second container gives the same tree.
	r, err := c.StreamOut(ctx(t), "/home/vcap/app")
	if err != nil {
		t.Fatal(err)
	}
	c2 := create(t, b, warden.ContainerSpec{})
	err = c2.StreamIn(ctx(t), "copy", r)
	r.Close()
	if err != nil {
		t.Fatalf("StreamIn of StreamOut: %v", err)
	}
	got := streamOut(t, c2, "copy")
	if got["lib/deep/x.txt"] != "deep" || got["cur"] != "link:lib" || len(got) != len(want)-1 {
		t.Errorf("copied tree = %v", got)
	}
}

func testStreamOutFile(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	if err := c.StreamIn(ctx(t), "d", tarOf(t, entry{name: "f.txt", body: "contents"})); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"f.txt": "contents"}, streamOut(t, c, "/d/f.txt")); diff != "" {
		t.Errorf("StreamOut of a file (-want +got):\n%s", diff)
	}
	_, err := c.StreamOut(ctx(t), "/d/missing")
	wantErr(t, "StreamOut missing", err, warden.ErrNotFound)
	// Overwriting a file replaces its contents.
	if err := c.StreamIn(ctx(t), "d", tarOf(t, entry{name: "f.txt", body: "new"})); err != nil {
		t.Fatal(err)
	}
	if got := streamOut(t, c, "d/f.txt")["f.txt"]; got != "new" {
		t.Errorf("after overwrite f.txt = %q, want new", got)
	}
}

func testPathTraversal(t *testing.T, b warden.Backend) {
	tests := []struct {
		name    string
		dst     string
		entries []entry
	}{
		{"dot-dot entry", "/", []entry{{name: "../evil", body: "x"}}},
		{"nested dot-dot entry", "/", []entry{{name: "a/../../evil", body: "x"}}},
		{"dot-dot entry below dst", "/sub", []entry{{name: "../../evil", body: "x"}}},
		{"absolute entry", "/", []entry{{name: "/abs-evil", body: "x"}}},
		{"dot-dot destination", "../out", []entry{{name: "f", body: "x"}}},
		{"link out by dot-dot", "/", []entry{{name: "l", link: "../../outside"}}},
		{"link absolute", "/", []entry{{name: "l", link: "/etc"}}},
		{"link to parent of root", "/", []entry{{name: "up", link: ".."}}},
		{"write through link out", "/", []entry{
			{name: "sub/", dir: true},
			{name: "sub/up", link: ".."}, // legal: points at the root
			{name: "sub/up/../evil", body: "x"},
		}},
		{"link whose real parent is the root", "/", []entry{
			{name: "self", link: "."},
			{name: "self/l", link: "../outside"}, // lands at /l, pointing out
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := create(t, b, warden.ContainerSpec{})
			err := c.StreamIn(ctx(t), tc.dst, tarOf(t, tc.entries...))
			wantErr(t, "StreamIn", err, warden.ErrInvalidPath)
		})
	}
	c := create(t, b, warden.ContainerSpec{})
	for _, p := range []string{"../", "/../etc", "a/../../b"} {
		_, err := c.StreamOut(ctx(t), p)
		wantErr(t, fmt.Sprintf("StreamOut(%q)", p), err, warden.ErrInvalidPath)
	}
	_, err := c.Run(ctx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "pwd"}, Dir: "../.."}, warden.ProcessIO{})
	wantErr(t, "Run with Dir ../..", err, warden.ErrInvalidPath)
}

func testLinksInside(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	err := c.StreamIn(ctx(t), "/", tarOf(t,
		entry{name: "real/", dir: true},
		entry{name: "alias", link: "real"},
		entry{name: "alias/f", body: "through"},
		entry{name: "real/sibling", link: "../alias/f"},
	))
	if err != nil {
		t.Fatalf("StreamIn with inside links: %v", err)
	}
	want := map[string]string{"f": "through", "sibling": "link:../alias/f"}
	if diff := cmp.Diff(want, streamOut(t, c, "real")); diff != "" {
		t.Errorf("StreamOut(real) (-want +got):\n%s", diff)
	}
	// A link naming the source is followed, like stat(2).
	if diff := cmp.Diff(want, streamOut(t, c, "alias")); diff != "" {
		t.Errorf("StreamOut(alias) (-want +got):\n%s", diff)
	}
}

func testUnsupportedEntries(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	for _, typ := range []byte{tar.TypeLink, tar.TypeFifo, tar.TypeChar} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: "x", Typeflag: typ, Linkname: "f", Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		err := c.StreamIn(ctx(t), "/", &buf)
		wantErr(t, fmt.Sprintf("StreamIn of type %q", typ), err, errors.ErrUnsupported)
	}
}

func testDiskLimit(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{Limits: warden.Limits{DiskBytes: 4096}})
	if err := c.StreamIn(ctx(t), "/", tarOf(t, entry{name: "small", body: strings.Repeat("s", 1000)})); err != nil {
		t.Fatalf("StreamIn under limit: %v", err)
	}
	if u := info(t, c).Usage.DiskBytes; u < 1000 {
		t.Errorf("Usage.DiskBytes = %d, want >= 1000", u)
	}
	err := c.StreamIn(ctx(t), "/", tarOf(t, entry{name: "big", body: strings.Repeat("b", 8192)}))
	wantErr(t, "StreamIn over limit", err, warden.ErrLimitExceeded)
}

func testEnv(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{Env: []string{"A=1", "B=2"}})
	spec := sh(`echo "$A $B $C"`)
	spec.Env = []string{"B=3", "C=4 5"}
	st, out, _ := runWait(t, c, spec)
	if st != 0 || out != "1 3 4 5\n" {
		t.Errorf("echo env = %d %q, want 0 %q", st, out, "1 3 4 5\n")
	}
}

func testWorkingDir(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	if err := c.StreamIn(ctx(t), "/app", tarOf(t, entry{name: "sub/data.txt", body: "payload"})); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ dir, want string }{
		{"app/sub", "/app/sub\n"},
		{"/app", "/app\n"},
		{"/app/./sub/", "/app/sub\n"},
	}
	for _, tc := range tests {
		spec := sh("pwd")
		spec.Dir = tc.dir
		st, out, _ := runWait(t, c, spec)
		if st != 0 || !strings.HasSuffix(out, tc.want) {
			t.Errorf("pwd in %q = %d %q, want 0 and suffix %q", tc.dir, st, out, tc.want)
		}
	}
	spec := sh("cat data.txt")
	spec.Dir = "/app/sub"
	if st, out, _ := runWait(t, c, spec); st != 0 || out != "payload" {
		t.Errorf("cat relative to Dir = %d %q", st, out)
	}
	spec.Dir = "/nowhere"
	_, err := c.Run(ctx(t), spec, warden.ProcessIO{})
	wantErr(t, "Run with missing Dir", err, warden.ErrNotFound)
}

func testExitStatus(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"exit 255", 255},
		{"echo hi", 0},
		{"echo a; exit 7; echo b", 7},
		{"cat /no/such/file", 1},
		{"cat /no/such/file && exit 0", 1},
	}
	for _, tc := range tests {
		if st, _, _ := runWait(t, c, sh(tc.script)); st != tc.want {
			t.Errorf("%q exited %d, want %d", tc.script, st, tc.want)
		}
	}
}

func testStdio(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	st, out, errOut := runWait(t, c, sh("echo one; echo two; cat missing"))
	if st != 1 || out != "one\ntwo\n" || errOut == "" {
		t.Errorf("got %d stdout %q stderr %q, want 1, %q and an error message", st, out, "one\ntwo\n", errOut)
	}
	p, out2, _ := run(t, c, sh("cat"), strings.NewReader("from stdin"))
	if st := wait(t, p); st != 0 || out2.String() != "from stdin" {
		t.Errorf("cat of stdin = %d %q", st, out2.String())
	}
	// No writers at all is fine.
	p, err := c.Run(ctx(t), sh("echo discarded"), warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); st != 0 {
		t.Errorf("status %d", st)
	}
}

func testOutputFiles(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	for _, word := range []string{"first", "second"} {
		spec := sh("echo " + word + "; cat missing")
		spec.StdoutPath = "/logs/stdout.log"
		spec.StderrPath = "/logs/stderr.log"
		st, out, _ := runWait(t, c, spec)
		if st != 1 || out != word+"\n" {
			t.Errorf("run %s: %d %q", word, st, out)
		}
	}
	logs := streamOut(t, c, "/logs")
	if logs["stdout.log"] != "first\nsecond\n" || logs["stderr.log"] == "" {
		t.Errorf("log files = %q", logs)
	}
	st, out, _ := runWait(t, c, sh("echo a > f; echo b >> f; echo c > /dev/null; cat f"))
	if st != 0 || out != "a\nb\n" {
		t.Errorf("redirections = %d %q", st, out)
	}
}

func testWaitContext(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	p, _, _ := run(t, c, sh("sleep 100"), nil)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Wait(short)
	wantErr(t, "Wait with expiring ctx", err, context.DeadlineExceeded)
	if err := p.Signal(ctx(t), warden.SignalKill); err != nil {
		t.Fatal(err)
	}
	for range 2 { // Wait can be repeated
		if st := wait(t, p); st != 137 {
			t.Errorf("status after SIGKILL = %d, want 137", st)
		}
	}
}

func testSignals(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	for _, sig := range []warden.Signal{warden.SignalTerminate, warden.SignalKill, warden.SignalHangup, warden.SignalUser1} {
		p, _, _ := run(t, c, sh("sleep 100"), nil)
		if err := p.Signal(ctx(t), sig); err != nil {
			t.Fatalf("Signal(%v): %v", sig, err)
		}
		if st := wait(t, p); st != sig.ExitStatus() {
			t.Errorf("status after %v = %d, want %d", sig, st, sig.ExitStatus())
		}
		err := p.Signal(ctx(t), warden.SignalTerminate)
		wantErr(t, "Signal after exit", err, warden.ErrProcessDone)
	}
}

func testSignalIgnored(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	p, out, _ := run(t, c, sh("trap '' TERM; echo ready; sleep 100"), nil)
	out.waitFor(t, "ready")
	if err := p.Signal(ctx(t), warden.SignalTerminate); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if st, err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("process ignoring SIGTERM exited: %d, %v", st, err)
	}
	if err := p.Signal(ctx(t), warden.SignalKill); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); st != 137 {
		t.Errorf("status after SIGKILL = %d, want 137", st)
	}
}

func testStopGraceThenKill(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	p, out, _ := run(t, c, sh("trap '' TERM; echo ready; sleep 100"), nil)
	out.waitFor(t, "ready")
	const grace = 300 * time.Millisecond
	start := time.Now()
	if err := c.Stop(ctx(t), grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took < grace {
		t.Errorf("Stop returned after %v, before the %v grace period", took, grace)
	}
	if st := wait(t, p); st != 137 {
		t.Errorf("status of TERM-ignoring process after Stop = %d, want 137", st)
	}
	if i := info(t, c); len(i.ProcessIDs) != 0 || len(i.PIDs) != 0 {
		t.Errorf("after Stop: process ids %v, pids %v, want none", i.ProcessIDs, i.PIDs)
	}
}

func testStopPrompt(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	p, _, _ := run(t, c, sh("sleep 100"), nil)
	start := time.Now()
	if err := c.Stop(ctx(t), timeout); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took > timeout/2 {
		t.Errorf("Stop of a TERM-obeying process took %v", took)
	}
	if st := wait(t, p); st != 143 {
		t.Errorf("status after Stop = %d, want 143 (SIGTERM)", st)
	}
}

func testStoppedContainer(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	if err := c.StreamIn(ctx(t), "/", tarOf(t, entry{name: "keep", body: "kept"})); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx(t), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx(t), 0); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	_, err := c.Run(ctx(t), sh("exit 0"), warden.ProcessIO{})
	wantErr(t, "Run on stopped", err, warden.ErrStopped)
	_, err = c.NetIn(ctx(t), 0, 0)
	wantErr(t, "NetIn on stopped", err, warden.ErrStopped)
	if got := streamOut(t, c, "keep")["keep"]; got != "kept" {
		t.Errorf("StreamOut on stopped = %q", got)
	}
}

func testProcessTree(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	// The shell exits at once, leaving its background child behind.
	if st, _, _ := runWait(t, c, sh("sleep 100 > /dev/null & exit 0")); st != 0 {
		t.Fatalf("parent exited %d", st)
	}
	i := info(t, c)
	if len(i.ProcessIDs) != 0 {
		t.Errorf("ProcessIDs = %v after the process exited", i.ProcessIDs)
	}
	if len(i.PIDs) == 0 {
		t.Fatalf("PIDs empty: the orphaned child is not accounted to the container")
	}
	if err := c.Stop(ctx(t), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if pids := info(t, c).PIDs; len(pids) != 0 {
		t.Errorf("PIDs after Stop = %v, want none", pids)
	}
}

func testProcessTreeIgnoringTerm(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	p, out, _ := run(t, c, sh("trap '' TERM; sleep 100 > /dev/null & echo ready; wait"), nil)
	out.waitFor(t, "ready")
	if n := len(info(t, c).PIDs); n < 2 {
		t.Errorf("PIDs has %d entries, want the shell and its child", n)
	}
	if err := c.Stop(ctx(t), 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); st != 137 {
		t.Errorf("status = %d, want 137", st)
	}
	if pids := info(t, c).PIDs; len(pids) != 0 {
		t.Errorf("PIDs after Stop = %v, want none", pids)
	}
}

func testLimits(t *testing.T, b warden.Backend) {
	initial := warden.Limits{DiskBytes: 1 << 30}
	c := create(t, b, warden.ContainerSpec{Limits: initial})
	if diff := cmp.Diff(initial, info(t, c).Limits); diff != "" {
		t.Errorf("initial limits (-want +got):\n%s", diff)
	}
	l := warden.Limits{MemoryBytes: 512 << 20, DiskBytes: 2 << 30, FileDescriptors: 256}
	if err := c.SetLimits(ctx(t), l); err != nil {
		t.Fatalf("SetLimits: %v", err)
	}
	if diff := cmp.Diff(l, info(t, c).Limits); diff != "" {
		t.Errorf("limits after SetLimits (-want +got):\n%s", diff)
	}
	if st, out, _ := runWait(t, c, sh("ulimit -n")); st != 0 || out != "256\n" {
		t.Errorf("ulimit -n in the container = %d %q, want 256", st, out)
	}
}

func testMemoryLimit(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{Limits: warden.Limits{MemoryBytes: 64 << 10}})
	p, err := c.Run(ctx(t), sh("sleep 100"), warden.ProcessIO{})
	if err != nil {
		// A backend may refuse to start a process that cannot fit at all.
		wantErr(t, "Run over the memory limit", err, warden.ErrLimitExceeded)
		return
	}
	if st := wait(t, p); st != 137 {
		t.Errorf("status over the memory limit = %d, want 137", st)
	}
	if ev := info(t, c).Events; !slices.Contains(ev, warden.EventOutOfMemory) {
		t.Errorf("Events = %v, want %q", ev, warden.EventOutOfMemory)
	}
}

func testPorts(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	m1, err := c.NetIn(ctx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := c.NetIn(ctx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m1.HostPort == 0 || m1.ContainerPort == 0 || m1.HostPort == m2.HostPort {
		t.Errorf("mappings %+v and %+v, want distinct non-zero host ports", m1, m2)
	}
	if diff := cmp.Diff([]warden.PortMapping{m1, m2}, info(t, c).Ports); diff != "" {
		t.Errorf("Info.Ports (-want +got):\n%s", diff)
	}
	other := create(t, b, warden.ContainerSpec{})
	_, err = other.NetIn(ctx(t), m1.HostPort, 0)
	wantErr(t, "NetIn of a mapped host port", err, warden.ErrExists)
}

func testAttach(t *testing.T, b warden.Backend) {
	c := create(t, b, warden.ContainerSpec{})
	spec := sh("sleep 100")
	spec.ID = "web"
	p, _, _ := run(t, c, spec, nil)
	if p.ID() != "web" {
		t.Errorf("ID() = %q, want web", p.ID())
	}
	if ids := info(t, c).ProcessIDs; !slices.Contains(ids, "web") {
		t.Errorf("ProcessIDs = %v, want web", ids)
	}
	_, err := c.Run(ctx(t), spec, warden.ProcessIO{})
	wantErr(t, "Run with a taken ID", err, warden.ErrExists)
	a, err := c.Attach(ctx(t), "web", warden.ProcessIO{})
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if a.ID() != "web" {
		t.Errorf("attached ID() = %q", a.ID())
	}
	if err := a.Signal(ctx(t), warden.SignalTerminate); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); st != 143 {
		t.Errorf("status = %d, want 143", st)
	}
	if st := wait(t, a); st != 143 {
		t.Errorf("attached status = %d, want 143", st)
	}
	_, err = c.Attach(ctx(t), "nope", warden.ProcessIO{})
	wantErr(t, "Attach unknown", err, warden.ErrNotFound)
}

func testDestroyKills(t *testing.T, b warden.Backend) {
	c, err := b.Create(ctx(t), warden.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	p, _, _ := run(t, c, sh("trap '' TERM; sleep 100"), nil)
	if err := b.Destroy(ctx(t), c.Handle()); err != nil {
		t.Fatal(err)
	}
	if st := wait(t, p); st != 137 && st != warden.ExitStatusUnknown {
		t.Errorf("status after Destroy = %d, want 137", st)
	}
}

// concurrency is how many containers testConcurrent drives at once.
const concurrency = 50

func testConcurrent(t *testing.T, b warden.Backend) {
	g, gctx := errgroup.WithContext(ctx(t))
	for i := range concurrency {
		g.Go(func() error { return lifecycle(gctx, b, i) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	cs, err := b.Containers(ctx(t), warden.Properties{"suite": "concurrent"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Errorf("%d containers left after concurrent destroy", len(cs))
	}
}

// lifecycle drives one container through create, stream in, run, stop and
// destroy.
func lifecycle(ctx context.Context, b warden.Backend, i int) error {
	c, err := b.Create(ctx, warden.ContainerSpec{Properties: warden.Properties{"suite": "concurrent"}})
	if err != nil {
		return err
	}
	// Best effort on early return; the Destroy at the end is checked.
	defer func() { _ = b.Destroy(context.WithoutCancel(ctx), c.Handle()) }()
	body := fmt.Sprintf("container %d", i)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := c.StreamIn(ctx, "/", &buf); err != nil {
		return fmt.Errorf("%s: stream in: %w", c.Handle(), err)
	}
	out := newBuffer()
	p, err := c.Run(ctx, sh("cat f"), warden.ProcessIO{Stdout: out})
	if err != nil {
		return fmt.Errorf("%s: run: %w", c.Handle(), err)
	}
	if st, err := p.Wait(ctx); err != nil || st != 0 || out.String() != body {
		return fmt.Errorf("%s: cat = %d %q %v, want %q", c.Handle(), st, out.String(), err, body)
	}
	if _, err := c.Run(ctx, sh("sleep 100"), warden.ProcessIO{}); err != nil {
		return fmt.Errorf("%s: run sleep: %w", c.Handle(), err)
	}
	if err := c.Stop(ctx, 5*time.Second); err != nil {
		return fmt.Errorf("%s: stop: %w", c.Handle(), err)
	}
	return b.Destroy(ctx, c.Handle())
}

func testCapacity(t *testing.T, b warden.Backend) {
	if _, err := b.Capacity(ctx(t)); err != nil {
		t.Errorf("Capacity: %v", err)
	}
}
