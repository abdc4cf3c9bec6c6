package process

import (
	"fmt"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

// rootDir is the container root's name inside the container's directory,
// beside its state file (statefile.Name), which processes cannot see.
const rootDir = "rootfs"

// stateVersion is bumped on incompatible changes to containerState.
const stateVersion = 1

// containerState is what survives a restart of the backend, one JSON file
// per container.
type containerState struct {
	statefile.Container
	Processes []processState `json:"processes,omitempty"`
}

// processState records one process. Its pid is also its session and
// process group id (processes start with setsid).
type processState struct {
	statefile.Process
	StartTicks uint64 `json:"start_ticks"`
	// SessionGone: no process of its session is left, so the id may be
	// reused by an unrelated session and must no longer be scanned for.
	SessionGone bool `json:"session_gone"`
}

// writeState replaces dir/state.json atomically (see statefile.Write).
func writeState(dir string, s *containerState) error { return statefile.Write(dir, s) }

// decodeState parses a state file's contents.
func decodeState(b []byte) (*containerState, error) {
	var s containerState
	if err := statefile.Decode(b, &s, stateVersion); err != nil {
		return nil, err
	}
	for _, p := range s.Processes {
		if p.PID <= 1 {
			return nil, fmt.Errorf("decode state: process %q has pid %d: %w", p.ID, p.PID, warden.ErrInvalidSpec)
		}
	}
	return &s, nil
}
