// Package statefile keeps the persisted state of the containers of
// warden's host backends (warden/process and warden/linux), which outlive
// the program that created them: one JSON file per container directory,
// Name, replaced atomically on every change and read back by the next
// backend on the same root (Scan).
//
// Container holds what both backends record of every container and what
// Info reports from it; each backend embeds it in its own state type,
// which adds what only it needs (processes, slots, init pids).
package statefile

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// Name is the state file's name in a container's directory, beside (not
// inside) its root directory, so processes cannot see or change it.
const Name = "state.json"

// Container is the state every host backend keeps of a container. Its
// fields are promoted into the JSON object of the state type embedding it.
type Container struct {
	// Version is bumped by a backend on incompatible changes to its state.
	Version    int                  `json:"version"`
	Handle     string               `json:"handle"`
	Properties warden.Properties    `json:"properties,omitempty"`
	Env        []string             `json:"env,omitempty"`
	Limits     warden.Limits        `json:"limits"`
	Ports      []warden.PortMapping `json:"ports,omitempty"`
	State      warden.State         `json:"state"`
	Events     []warden.Event       `json:"events,omitempty"`
	Created    time.Time            `json:"created"`
}

// Process is what every host backend records of a process it started.
type Process struct {
	ID  string `json:"id"`
	PID int    `json:"pid"`
	// StdoutPath and StderrPath are the container paths of its output
	// files (see warden.ProcessSpec), kept so that Attach after a restart
	// can follow them.
	StdoutPath string `json:"stdout_path,omitempty"`
	StderrPath string `json:"stderr_path,omitempty"`
	Exited     bool   `json:"exited"`
	ExitStatus int    `json:"exit_status"`
}

// New returns the state of a container created now from spec, active,
// with handle (spec.Handle or a generated one).
func New(version int, handle string, spec warden.ContainerSpec) Container {
	return Container{
		Version:    version,
		Handle:     handle,
		Properties: maps.Clone(spec.Properties),
		Env:        spec.Env,
		Limits:     spec.Limits,
		State:      warden.StateActive,
		Created:    time.Now().UTC(),
	}
}

// Check reports, wrapping warden.ErrInvalidSpec, a decoded state that is
// not of version, names an invalid handle or holds an unknown state.
func (c *Container) Check(version int) error {
	if c.Version != version {
		return fmt.Errorf("decode state: version %d, want %d: %w", c.Version, version, warden.ErrInvalidSpec)
	}
	if err := warden.ValidateHandle(c.Handle); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	if c.State != warden.StateActive && c.State != warden.StateStopped {
		return fmt.Errorf("decode state: state %q: %w", c.State, warden.ErrInvalidSpec)
	}
	return nil
}

// Matches reports whether the container's properties include every
// key/value pair of match (see warden.Backend.Containers).
func (c *Container) Matches(match warden.Properties) bool {
	for k, v := range match {
		if got, ok := c.Properties[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Info returns the warden.ContainerInfo of the recorded state, with
// hostIP and path (the root directory on the host), pids (sorted here),
// usage and the ids of the live processes (sorted here). Slices and maps
// are copies, so the caller may release its lock on c afterwards.
func (c *Container) Info(hostIP, path string, pids []int, usage warden.Usage, live []string) warden.ContainerInfo {
	slices.Sort(pids)
	slices.Sort(live)
	return warden.ContainerInfo{
		Handle:     c.Handle,
		State:      c.State,
		Properties: maps.Clone(c.Properties),
		HostIP:     hostIP,
		Path:       path,
		ProcessIDs: live,
		PIDs:       pids,
		Ports:      slices.Clone(c.Ports),
		Limits:     c.Limits,
		Usage:      usage,
		Events:     slices.Clone(c.Events),
	}
}

// Write replaces dir/Name with the JSON of v atomically: it writes a
// temporary file in the same directory and renames it over the old one,
// so a crash of the program leaves either the old or the new state, never
// a torn file. It does not fsync: the state only matters while the
// container's processes live, and a machine crash that could lose
// unsynced data kills them too (a state file torn by one is skipped by
// Scan with a warning).
func Write(dir string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	f, err := os.CreateTemp(dir, Name+".tmp-*")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, Name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// State is a backend's state type: one embedding Container, whose Check
// it has.
type State interface {
	Check(version int) error
}

// Decode parses a state file's contents into s and checks them (see
// Container.Check).
func Decode(b []byte, s State, version int) error {
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	return s.Check(version)
}

// Scan calls load for every directory under root named like a container
// (see warden.ValidateHandle), with its name, path and state file's
// contents. A directory whose state file cannot be read, or which load
// refuses with an error, is skipped and logged ("container-skipped").
// Scan fails only when root cannot be listed.
func Scan(root string, log *slog.Logger, load func(handle, dir string, raw []byte) error) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || warden.ValidateHandle(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, Name))
		if err == nil {
			err = load(e.Name(), dir, raw)
		}
		if err != nil {
			log.Warn("container-skipped", "dir", dir, "error", err)
		}
	}
	return nil
}
