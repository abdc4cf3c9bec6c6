package protocol

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// golden pairs each file in testdata with a decoder. The files hold messages
// as the original system sent them.
var golden = map[string]func([]byte) (Message, error){
	"dea.discover":                 decodeAs[Discover],
	"dea.start":                    decodeAs[Start],
	"dea.stop":                     decodeAs[Stop],
	"dea.heartbeat":                decodeAs[Heartbeat],
	"droplet.exited":               decodeAs[Exited],
	"dea.advertise":                decodeAs[Advertise],
	"router.register":              decodeAs[Register],
	"router.start":                 decodeAs[RouterHello],
	"cloudcontrollers.hm.requests": decodeAs[HMRequest],
	"healthmanager.status":         decodeAs[HMStatusRequest],
	"dea.find.droplet.reply":       decodeAs[FindDropletReply],
	"vcap.component.announce":      decodeAs[Component],
}

func decodeAs[T any, PT interface {
	*T
	Message
}](data []byte) (Message, error) {
	v, err := Decode[T, PT](data)
	return PT(&v), err
}

// TestGolden decodes every golden message, checks it validates, re-encodes
// it, and checks that every key the original sent survives with its value
// (apart from keys kiln does not model, listed per file).
func TestGolden(t *testing.T) {
	dropped := map[string][]string{
		"dea.find.droplet.reply": {"debug_ip", "debug_port"},
	}
	for name, decode := range golden {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			msg, err := decode(data)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out, err := json.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			var in, back map[string]any
			if err := json.Unmarshal(data, &in); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatal(err)
			}
			for _, k := range dropped[name] {
				delete(in, k)
			}
			for k, v := range in {
				got, ok := back[k]
				if !ok {
					if v == nil || v == false {
						continue // omitted zero values are equivalent
					}
					t.Errorf("key %q lost in re-encoding", k)
					continue
				}
				if k == "droplet" || k == "app" {
					continue // integer ids become strings by design
				}
				if diff := cmp.Diff(normalize(v), normalize(got)); diff != "" {
					t.Errorf("key %q changed (-orig +kiln):\n%s", k, diff)
				}
			}
		})
	}
}

// normalize drops null map entries, which kiln omits.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range x {
			if e != nil {
				m[k] = normalize(e)
			}
		}
		return m
	case []any:
		for i := range x {
			x[i] = normalize(x[i])
		}
	}
	return v
}

func TestAppIDAcceptsIntegers(t *testing.T) {
	tests := []struct {
		in   string
		want AppID
		ok   bool
	}{
		{`{"droplet":42}`, "42", true},
		{`{"droplet":"abc-1"}`, "abc-1", true},
		{`{"droplet":null}`, "", true},
		{`{"droplet":4.5}`, "", false},
		{`{"droplet":true}`, "", false},
	}
	for _, tt := range tests {
		var m Updated
		err := json.Unmarshal([]byte(tt.in), &m)
		if (err == nil) != tt.ok || m.Droplet != tt.want {
			t.Errorf("%s: got %q, %v; want %q ok=%v", tt.in, m.Droplet, err, tt.want, tt.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	start := func(f func(*Start)) *Start {
		s := &Start{Droplet: "a", SHA1: "s", ExecutableURI: "http://x/d", Version: "v1", Limits: Limits{Mem: 128}}
		f(s)
		return s
	}
	reg := func(f func(*Register)) *Register {
		r := &Register{Host: "127.0.0.1", Port: 8080, URIs: []string{"foo.example.com"}}
		f(r)
		return r
	}
	tests := []struct {
		name string
		msg  Message
		ok   bool
	}{
		{"start ok", start(func(*Start) {}), true},
		{"start no sha", start(func(s *Start) { s.SHA1 = "" }), false},
		{"start no uri", start(func(s *Start) { s.ExecutableURI = "" }), false},
		{"start file only", start(func(s *Start) { s.ExecutableURI, s.ExecutableFile = "", "/d" }), true},
		{"start negative index", start(func(s *Start) { s.Index = -1 }), false},
		{"start zero mem", start(func(s *Start) { s.Limits.Mem = 0 }), false},
		{"start bad health check", start(func(s *Start) { s.HealthCheckType = "ping" }), false},
		{"start bad uri", start(func(s *Start) { s.URIs = []string{"a b"} }), false},
		{"register ok", reg(func(*Register) {}), true},
		{"register wildcard", reg(func(r *Register) { r.URIs = []string{"*.example.com"} }), true},
		{"register path", reg(func(r *Register) { r.URIs = []string{"example.com/api"} }), true},
		{"register no host", reg(func(r *Register) { r.Host = "" }), false},
		{"register port 0", reg(func(r *Register) { r.Port = 0 }), false},
		{"register port big", reg(func(r *Register) { r.Port = 70000 }), false},
		{"register no uris", reg(func(r *Register) { r.URIs = nil }), false},
		{"register empty uri", reg(func(r *Register) { r.URIs = []string{""} }), false},
		{"register query", reg(func(r *Register) { r.URIs = []string{"a.com?x"} }), false},
		{"exited ok", &Exited{Droplet: "a", Instance: "i", Reason: ReasonCrashed}, true},
		{"exited reason", &Exited{Droplet: "a", Instance: "i", Reason: "BORED"}, false},
		{"exited no instance", &Exited{Droplet: "a", Reason: ReasonStopped}, false},
		{"hm start ok", &HMRequest{Droplet: "a", Op: OpStart, Indices: []int{0}}, true},
		{"hm start no indices", &HMRequest{Droplet: "a", Op: OpStart}, false},
		{"hm start neg", &HMRequest{Droplet: "a", Op: OpStart, Indices: []int{-1}}, false},
		{"hm stop ok", &HMRequest{Droplet: "a", Op: OpStop, Instances: []string{"i"}}, true},
		{"hm stop none", &HMRequest{Droplet: "a", Op: OpStop}, false},
		{"hm bad op", &HMRequest{Droplet: "a", Op: "KILL", Indices: []int{1}}, false},
		{"hm status ok", &HMStatusRequest{Droplet: "a", State: StateCrashed}, true},
		{"hm status bad", &HMStatusRequest{Droplet: "a", State: StateRunning}, false},
		{"heartbeat ok", &Heartbeat{DEA: "d", Droplets: []InstanceHeartbeat{{Droplet: "a", Instance: "i", State: StateRunning}}}, true},
		{"heartbeat bad", &Heartbeat{DEA: "d", Droplets: []InstanceHeartbeat{{Droplet: "a"}}}, false},
		{"discover ok", &Discover{Droplet: "a", Limits: Limits{Mem: 1}}, true},
		{"discover no mem", &Discover{Droplet: "a"}, false},
		{"advertise neg", &Advertise{ID: "d", AvailableMemory: -1}, false},
		{"update ok", &Update{Droplet: "a", URIs: []string{"x.com"}}, true},
		{"filter no droplet", &InstanceFilter{}, false},
		{"log no source", &LogLine{App: "a"}, false},
		{"staging missing", &StagingRequest{App: "a"}, false},
		{"component ok", &Component{Type: "DEA", UUID: "u"}, true},
	}
	for _, tt := range tests {
		err := tt.msg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: error %v does not wrap ErrInvalid", tt.name, err)
		}
	}
}

func TestDecodeRejectsWrongTypes(t *testing.T) {
	for _, in := range []string{`not json`, `{"droplet":"a","index":"one"}`, `[]`} {
		if _, err := Decode[Start](([]byte)(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%s) = %v, want ErrInvalid", in, err)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	f := InstanceFilter{Droplet: "a", Version: "v2", Indices: []int{1, 3}, States: []string{StateRunning}}
	tests := []struct {
		app     AppID
		version string
		index   int
		state   string
		want    bool
	}{
		{"a", "v2", 1, StateRunning, true},
		{"a", "v2", 3, StateRunning, true},
		{"a", "v2", 2, StateRunning, false},
		{"a", "v1", 1, StateRunning, false},
		{"a", "v2", 1, StateCrashed, false},
		{"b", "v2", 1, StateRunning, false},
	}
	for _, tt := range tests {
		if got := f.Match(tt.app, tt.version, "i", tt.index, tt.state); got != tt.want {
			t.Errorf("Match(%v) = %v, want %v", tt, got, tt.want)
		}
	}
	all := InstanceFilter{Droplet: "a"}
	if !all.Match("a", "anything", "i", 9, StateCrashed) {
		t.Error("a filter with only droplet must match every instance of the app")
	}
	byID := InstanceFilter{Droplet: "a", Instances: []string{"x"}}
	if byID.Match("a", "v", "y", 0, StateRunning) || !byID.Match("a", "v", "x", 0, StateRunning) {
		t.Error("instance filter")
	}
}

func TestSubjects(t *testing.T) {
	if got := DEAStartSubject("0-abc"); got != "dea.0-abc.start" {
		t.Errorf("DEAStartSubject = %q", got)
	}
	if got := LogSubject("app-1"); got != "logs.app-1" {
		t.Errorf("LogSubject = %q", got)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder of every message type: it
// must never panic, and whatever it accepts must validate and survive a
// round trip through JSON.
func FuzzDecode(f *testing.F) {
	names := make([]string, 0, len(golden))
	for name := range golden {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), data)
	}
	f.Add(uint8(0), []byte(`{"droplet":`))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		decode := golden[names[int(kind)%len(names)]]
		msg, err := decode(data)
		if err != nil {
			return
		}
		if err := msg.Validate(); err != nil {
			t.Fatalf("accepted message does not validate: %v", err)
		}
		out, err := json.Marshal(msg)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := decode(out); err != nil {
			t.Fatalf("round trip of %s failed: %v", out, err)
		}
	})
}
