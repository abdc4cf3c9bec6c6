package linux

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		in      string
		want    request
		wantErr bool
	}{
		{`{"op":"list"}`, request{Op: opList}, false},
		{`{"op":"wait","id":"w"}`, request{Op: opWait, ID: "w"}, false},
		{`{"op":"signal","id":"w","signal":15}`, request{Op: opSignal, ID: "w", Signal: 15}, false},
		{`{"op":"run","id":"r","exec":{"path":"sh","dir":"/","uid":10000,"gid":10000}}`,
			request{Op: opRun, ID: "r", Exec: &execSpec{Path: "sh", Dir: "/", UID: 10000, GID: 10000}}, false},
		{`{"op":"run","id":"r"}`, request{}, true},
		{`{"op":"run","exec":{"path":"sh"}}`, request{}, true},
		{`{"op":"wait"}`, request{}, true},
		{`{"op":"format-disk"}`, request{}, true},
		{`not json`, request{}, true},
	}
	for _, tc := range tests {
		got, err := decodeRequest([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("decodeRequest(%s) error = %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("decodeRequest(%s) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestReplyErr(t *testing.T) {
	tests := []struct {
		kind string
		want error
	}{
		{kindNotFound, warden.ErrNotFound},
		{kindExists, warden.ErrExists},
		{kindDone, warden.ErrProcessDone},
		{kindInvalid, warden.ErrInvalidSpec},
	}
	for _, tc := range tests {
		if err := (reply{Error: "x", Kind: tc.kind}).err(); !errors.Is(err, tc.want) {
			t.Errorf("kind %s: %v, want %v", tc.kind, err, tc.want)
		}
	}
	if err := (reply{}).err(); err != nil {
		t.Errorf("empty reply: %v", err)
	}
}

func TestParseStartTicks(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100 18446744073709551615", 987654, false},
		{"7 (a) b) c) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0", 55, false},
		{"9 (zomb) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0", 0, true},
		{"9 (short) S 1 2 3", 0, true},
		{"no parens", 0, true},
	}
	for _, tc := range tests {
		got, err := parseStartTicks([]byte(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseStartTicks(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDecodeState(t *testing.T) {
	good := containerState{Container: statefile.Container{Version: stateVersion, Handle: "h", State: warden.StateActive}, Processes: []processState{{ID: "a"}}}
	tests := []struct {
		name   string
		mutate func(*containerState)
		ok     bool
	}{
		{"good", func(*containerState) {}, true},
		{"version", func(s *containerState) { s.Version = 99 }, false},
		{"handle", func(s *containerState) { s.Handle = "../x" }, false},
		{"state", func(s *containerState) { s.State = "zombie" }, false},
		{"slot", func(s *containerState) { s.Slot = -1 }, false},
		{"repeated process", func(s *containerState) { s.Processes = append(s.Processes, processState{ID: "a"}) }, false},
	}
	for _, tc := range tests {
		s := good
		s.Processes = append([]processState(nil), good.Processes...)
		tc.mutate(&s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeState(b); (err == nil) != tc.ok {
			t.Errorf("%s: decodeState error %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"run","id":"r","exec":{"path":"sh","args":["-c","x"],"env":["A=1"],"dir":"/"}}`))
	f.Add([]byte(`{"op":"signal","id":"w","signal":9}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRequest(b)
		if err != nil {
			return
		}
		if r.Op == opRun && (r.Exec == nil || r.Exec.Path == "") {
			t.Fatalf("accepted run without a program: %+v", r)
		}
		if r.Op != opList && r.ID == "" {
			t.Fatalf("accepted %s without id", r.Op)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add([]byte(`{"pid":3}`))
	f.Add([]byte(`{"procs":[{"id":"a","pid":2,"exited":true,"status":143}]}`))
	f.Add([]byte(`{"error":"x","kind":"done"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeReply(b)
		if err != nil {
			return
		}
		if (r.err() == nil) != (r.Error == "") {
			t.Fatalf("reply %+v: err() = %v", r, r.err())
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"version":1,"handle":"h","state":"active","slot":3,"processes":[{"id":"a","pid":4}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		if warden.ValidateHandle(s.Handle) != nil || s.Slot < 0 {
			t.Fatalf("accepted state %+v", s)
		}
	})
}

func FuzzParseStartTicks(f *testing.F) {
	f.Add([]byte("42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStartTicks(b) // must not panic
	})
}
