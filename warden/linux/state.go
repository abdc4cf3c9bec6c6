package linux

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// Files of a container's directory Config.Root/<handle>. Only rootfs is
// visible inside the container.
const (
	stateFile  = "state.json" // containerState
	rootDir    = "rootfs"     // the container's "/", its writable layer
	socketFile = "init.sock"  // the init's seqpacket socket
	logFile    = "init.log"   // the init's standard output and error
)

// stateVersion is bumped on incompatible changes to containerState.
const stateVersion = 1

// containerState is what survives a restart of the backend, one JSON file
// per container.
type containerState struct {
	Version    int                  `json:"version"`
	Handle     string               `json:"handle"`
	Properties warden.Properties    `json:"properties,omitempty"`
	Env        []string             `json:"env,omitempty"`
	Limits     warden.Limits        `json:"limits"`
	Ports      []warden.PortMapping `json:"ports,omitempty"`
	State      warden.State         `json:"state"`
	Events     []warden.Event       `json:"events,omitempty"`
	// Slot numbers the container among live ones: its user id is
	// Config.UIDBase+Slot.
	Slot int `json:"slot"`
	// InitPID and InitStart (start time in clock ticks after boot, from
	// /proc/<pid>/stat) identify the init across pid reuse.
	InitPID   int    `json:"init_pid"`
	InitStart uint64 `json:"init_start"`
	// OOMKills is the cgroup's OOM kill count already turned into events.
	OOMKills  uint64         `json:"oom_kills"`
	Processes []processState `json:"processes,omitempty"`
	Created   time.Time      `json:"created"`
}

// processState records one process; its exit status is known to init
// while init lives.
type processState struct {
	ID         string `json:"id"`
	PID        int    `json:"pid"` // inside the container's pid namespace
	StdoutPath string `json:"stdout_path,omitempty"`
	StderrPath string `json:"stderr_path,omitempty"`
	Exited     bool   `json:"exited"`
	ExitStatus int    `json:"exit_status"`
}

// writeState replaces dir/state.json atomically (a temporary file renamed
// over it), so a crash leaves the old or the new state, never a torn one.
func writeState(dir string, s *containerState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	f, err := os.CreateTemp(dir, stateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, stateFile))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// decodeState parses and checks a state file's contents.
func decodeState(b []byte) (*containerState, error) {
	var s containerState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("decode state: version %d, want %d: %w", s.Version, stateVersion, warden.ErrInvalidSpec)
	}
	if err := warden.ValidateHandle(s.Handle); err != nil {
		return nil, fmt.Errorf("decode state: %w", err)
	}
	if s.State != warden.StateActive && s.State != warden.StateStopped {
		return nil, fmt.Errorf("decode state: state %q: %w", s.State, warden.ErrInvalidSpec)
	}
	if s.Slot < 0 || s.InitPID < 0 {
		return nil, fmt.Errorf("decode state: negative slot or pid: %w", warden.ErrInvalidSpec)
	}
	seen := map[string]bool{}
	for _, p := range s.Processes {
		if p.ID == "" || seen[p.ID] {
			return nil, fmt.Errorf("decode state: process id %q empty or repeated: %w", p.ID, warden.ErrInvalidSpec)
		}
		seen[p.ID] = true
	}
	return &s, nil
}
