package process

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want procStat
		ok   bool
	}{
		{
			"plain",
			"27589 (cat) R 27587 27587 5741 0 -1 4194304 98 0 0 0 3 4 5 6 20 0 1 0 91809 3133440 413 18446744073709551615 0 0",
			procStat{PID: 27589, State: 'R', PGRP: 27587, Session: 5741, CPUTicks: 18, StartTicks: 91809, RSSPages: 413},
			true,
		},
		{
			"name with spaces and parens",
			"12 (a) b (c) S 1 12 12 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 500 0 7",
			procStat{PID: 12, State: 'S', PGRP: 12, Session: 12, CPUTicks: 2, StartTicks: 500, RSSPages: 7},
			true,
		},
		{
			"negative child times ignored",
			"5 (z) Z 1 5 5 0 -1 0 0 0 0 0 1 1 -3 -4 20 0 1 0 9 0 0",
			procStat{PID: 5, State: 'Z', PGRP: 5, Session: 5, CPUTicks: 2, StartTicks: 9},
			true,
		},
		{"truncated", "5 (z) S 1 5 5", procStat{}, false},
		{"no name", "5 z S 1 5 5 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0", procStat{}, false},
		{"bad pid", "x (z) S 1 5 5 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0", procStat{}, false},
		{"bad number", "5 (z) S 1 5 q 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 9 0 0", procStat{}, false},
	}
	for _, tc := range tests {
		got, err := parseStat([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); tc.ok && diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	self, err := readStat("/proc", os.Getpid())
	if err != nil || self.PID != os.Getpid() || !self.alive() || self.StartTicks == 0 {
		t.Errorf("own stat = %+v, %v", self, err)
	}
}

// FuzzParseStat: /proc content is outside input (command names are chosen
// by whoever runs the process).
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("27589 (cat) R 27587 27587 5741 0 -1 4194304 98 0 0 0 3 4 5 6 20 0 1 0 91809 3133440 413 0"))
	f.Add([]byte("1 ()) ( S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 0 1"))
	f.Add([]byte(")("))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err == nil && st.State == 0 {
			t.Fatalf("accepted %q without a state", b)
		}
	})
}

func TestDecodeState(t *testing.T) {
	good := containerState{Container: statefile.Container{Version: stateVersion, Handle: "h", State: warden.StateActive},
		Processes: []processState{{Process: statefile.Process{ID: "p", PID: 42}}}}
	tests := []struct {
		name   string
		mutate func(*containerState)
		ok     bool
	}{
		{"good", func(*containerState) {}, true},
		{"version", func(s *containerState) { s.Version = 99 }, false},
		{"handle", func(s *containerState) { s.Handle = "../x" }, false},
		{"state", func(s *containerState) { s.State = "zombie" }, false},
		{"pid", func(s *containerState) { s.Processes[0].PID = 1 }, false},
	}
	for _, tc := range tests {
		s := good
		s.Processes = append([]processState(nil), good.Processes...)
		tc.mutate(&s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeState(b)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if tc.ok && !cmp.Equal(&s, got) {
			t.Errorf("%s: round trip %+v", tc.name, got)
		}
	}
	if _, err := decodeState([]byte("{")); err == nil {
		t.Error("decoded a torn file")
	}
}

// FuzzDecodeState: state files are read back after a restart and may be
// torn or edited; decoding must never panic and what it accepts is valid.
func FuzzDecodeState(f *testing.F) {
	b, _ := json.Marshal(containerState{Container: statefile.Container{Version: stateVersion, Handle: "h", State: warden.StateStopped},
		Processes: []processState{{Process: statefile.Process{ID: "p", PID: 7, Exited: true}}}})
	f.Add(b)
	f.Add([]byte(`{"version":1,"handle":"","state":"active"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeState(b)
		if err != nil {
			return
		}
		if warden.ValidateHandle(s.Handle) != nil || (s.State != warden.StateActive && s.State != warden.StateStopped) {
			t.Fatalf("accepted invalid state %+v", s)
		}
		for _, p := range s.Processes {
			if p.PID <= 1 {
				t.Fatalf("accepted pid %d", p.PID)
			}
		}
	})
}
