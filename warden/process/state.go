package process

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// stateFile is the name of a container's persisted state, beside (not
// inside) its root directory so processes cannot see or change it.
const stateFile = "state.json"

// rootDir is the container root's name inside the container's directory.
const rootDir = "rootfs"

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
	Processes  []processState       `json:"processes,omitempty"`
	Created    time.Time            `json:"created"`
}

// processState records one process. Its pid is also its session and
// process group id (processes start with setsid).
type processState struct {
	ID         string `json:"id"`
	PID        int    `json:"pid"`
	StartTicks uint64 `json:"start_ticks"`
	StdoutPath string `json:"stdout_path,omitempty"`
	StderrPath string `json:"stderr_path,omitempty"`
	Exited     bool   `json:"exited"`
	ExitStatus int    `json:"exit_status"`
	// SessionGone: no process of its session is left, so the id may be
	// reused by an unrelated session and must no longer be scanned for.
	SessionGone bool `json:"session_gone"`
}

// writeState replaces dir/state.json atomically: it writes a temporary
// file in the same directory and renames it over the old one, so a crash
// of the program leaves either the old or the new state, never a torn
// file. It does not fsync: the state only matters while its processes
// live, and a machine crash that could lose unsynced data kills them too
// (a state file torn by one is skipped by New with a warning).
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

// decodeState parses a state file's contents.
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
	for _, p := range s.Processes {
		if p.PID <= 1 {
			return nil, fmt.Errorf("decode state: process %q has pid %d: %w", p.ID, p.PID, warden.ErrInvalidSpec)
		}
	}
	return &s, nil
}
