package linux

import (
	"fmt"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

// Files of a container's directory Config.Root/<handle>, beside the
// state file (statefile.Name, holding containerState). Only rootfs is
// visible inside the container.
const (
	rootDir    = "rootfs"    // the container's "/", its writable layer
	socketFile = "init.sock" // the init's seqpacket socket
	logFile    = "init.log"  // the init's standard output and error
)

// stateVersion is bumped on incompatible changes to containerState.
const stateVersion = 1

// containerState is what survives a restart of the backend, one JSON file
// per container.
type containerState struct {
	statefile.Container
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
}

// processState records one process (its PID is the one inside the
// container's pid namespace); its exit status is known to init while init
// lives.
type processState = statefile.Process

// writeState replaces dir/state.json atomically (see statefile.Write).
func writeState(dir string, s *containerState) error { return statefile.Write(dir, s) }

// decodeState parses and checks a state file's contents.
func decodeState(b []byte) (*containerState, error) {
	var s containerState
	if err := statefile.Decode(b, &s, stateVersion); err != nil {
		return nil, err
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
