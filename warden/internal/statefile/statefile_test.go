package statefile

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
)

// testState is a backend's state type: Container plus its own fields.
type testState struct {
	Container
	Slot      int       `json:"slot"`
	Processes []Process `json:"processes,omitempty"`
}

func TestWriteDecodeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	spec := warden.ContainerSpec{Properties: warden.Properties{"app": "a"}, Env: []string{"A=1"}, Limits: warden.Limits{MemoryBytes: 1 << 20}}
	want := testState{Container: New(3, "h", spec), Slot: 7, Processes: []Process{{ID: "p", PID: 42, StdoutPath: "/log", Exited: true, ExitStatus: 2}}}
	for range 3 { // replaced, not appended to
		if err := Write(dir, &want); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != Name {
		t.Errorf("directory holds %v, want only %s (no temporary files left)", entries, Name)
	}
	b, err := os.ReadFile(filepath.Join(dir, Name))
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "handle", "properties", "env", "limits", "state", "created", "slot", "processes"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("state file lacks top-level %q: %s", k, b)
		}
	}
	var got testState
	if err := Decode(b, &got, 3); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if err := Decode(b, &got, 4); !errors.Is(err, warden.ErrInvalidSpec) {
		t.Errorf("Decode of another version = %v, want ErrInvalidSpec", err)
	}
}

func TestWriteIntoMissingDir(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "missing"), &testState{})
	if err == nil || !strings.Contains(err.Error(), "write state") {
		t.Errorf("Write into a missing directory = %v", err)
	}
}

func TestNewClonesProperties(t *testing.T) {
	props := warden.Properties{"k": "v"}
	c := New(1, "h", warden.ContainerSpec{Properties: props})
	props["k"] = "changed"
	if c.Properties["k"] != "v" || c.State != warden.StateActive || c.Created.IsZero() || c.Created.Location() != time.UTC {
		t.Errorf("New = %+v", c)
	}
}

func TestCheck(t *testing.T) {
	good := Container{Version: 1, Handle: "h", State: warden.StateActive}
	tests := []struct {
		name   string
		mutate func(*Container)
		ok     bool
	}{
		{"good", func(*Container) {}, true},
		{"stopped", func(c *Container) { c.State = warden.StateStopped }, true},
		{"version", func(c *Container) { c.Version = 2 }, false},
		{"handle", func(c *Container) { c.Handle = "../x" }, false},
		{"empty handle", func(c *Container) { c.Handle = "" }, false},
		{"state", func(c *Container) { c.State = "zombie" }, false},
	}
	for _, tc := range tests {
		c := good
		tc.mutate(&c)
		err := c.Check(1)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Check = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, warden.ErrInvalidSpec) {
			t.Errorf("%s: Check = %v, want ErrInvalidSpec", tc.name, err)
		}
	}
	if err := Decode([]byte("{"), &Container{}, 1); err == nil {
		t.Error("decoded a torn file")
	}
}

func TestMatches(t *testing.T) {
	c := Container{Properties: warden.Properties{"a": "1", "b": "2"}}
	tests := []struct {
		match warden.Properties
		want  bool
	}{
		{nil, true},
		{warden.Properties{}, true},
		{warden.Properties{"a": "1"}, true},
		{warden.Properties{"a": "1", "b": "2"}, true},
		{warden.Properties{"a": "2"}, false},
		{warden.Properties{"c": ""}, false},
	}
	for _, tc := range tests {
		if got := c.Matches(tc.match); got != tc.want {
			t.Errorf("Matches(%v) = %v, want %v", tc.match, got, tc.want)
		}
	}
}

func TestInfo(t *testing.T) {
	c := Container{
		Handle: "h", State: warden.StateStopped,
		Properties: warden.Properties{"a": "1"},
		Ports:      []warden.PortMapping{{HostPort: 1, ContainerPort: 2}},
		Limits:     warden.Limits{DiskBytes: 9},
		Events:     []warden.Event{warden.EventOutOfMemory},
	}
	usage := warden.Usage{MemoryBytes: 5, CPU: time.Second, DiskBytes: 6}
	got := c.Info("10.0.0.1", "/root/h/rootfs", []int{30, 10, 20}, usage, []string{"b", "a"})
	want := warden.ContainerInfo{
		Handle: "h", State: warden.StateStopped,
		Properties: warden.Properties{"a": "1"},
		HostIP:     "10.0.0.1", Path: "/root/h/rootfs",
		ProcessIDs: []string{"a", "b"},
		PIDs:       []int{10, 20, 30},
		Ports:      []warden.PortMapping{{HostPort: 1, ContainerPort: 2}},
		Limits:     warden.Limits{DiskBytes: 9},
		Usage:      usage,
		Events:     []warden.Event{warden.EventOutOfMemory},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Info (-want +got):\n%s", diff)
	}
	got.Properties["a"], got.Ports[0].HostPort, got.Events[0] = "x", 9, "x"
	if c.Properties["a"] != "1" || c.Ports[0].HostPort != 1 || c.Events[0] != warden.EventOutOfMemory {
		t.Error("Info shares maps or slices with the state")
	}
}

func TestScan(t *testing.T) {
	root := t.TempDir()
	mk := func(name, content string) {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if content != "" {
			if err := os.WriteFile(filepath.Join(dir, Name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("good", `{"version":1,"handle":"good","state":"active"}`)
	mk("refused", `{"version":1,"handle":"other","state":"active"}`)
	mk("nostate", "")
	mk(".hidden", `{}`) // not a handle: not even read
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var loaded []string
	err := Scan(root, slog.New(slog.NewTextHandler(&logs, nil)), func(handle, dir string, raw []byte) error {
		var c Container
		if err := Decode(raw, &c, 1); err != nil {
			return err
		}
		if c.Handle != handle || dir != filepath.Join(root, handle) {
			return errors.New("mismatch")
		}
		loaded = append(loaded, handle)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(loaded, []string{"good"}) {
		t.Errorf("loaded %v, want [good]", loaded)
	}
	for _, skipped := range []string{"refused", "nostate"} {
		if !strings.Contains(logs.String(), "container-skipped dir="+filepath.Join(root, skipped)) {
			t.Errorf("no skip of %s logged:\n%s", skipped, logs.String())
		}
	}
	if strings.Contains(logs.String(), "hidden") {
		t.Errorf("a directory that is not a handle was read:\n%s", logs.String())
	}
	if err := Scan(filepath.Join(root, "missing"), slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("Scan of a missing root succeeded")
	}
}

// FuzzDecodeCheck: state files are read back after a restart and may be
// torn or edited; decoding must never panic and what passes Check is
// valid.
func FuzzDecodeCheck(f *testing.F) {
	b, _ := json.Marshal(testState{Container: Container{Version: 1, Handle: "h", State: warden.StateActive}})
	f.Add(b)
	f.Add([]byte(`{"version":1,"handle":"","state":"active"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s testState
		if Decode(b, &s, 1) != nil {
			return
		}
		if warden.ValidateHandle(s.Handle) != nil || (s.State != warden.StateActive && s.State != warden.StateStopped) || s.Version != 1 {
			t.Fatalf("accepted invalid state %+v", s)
		}
	})
}
