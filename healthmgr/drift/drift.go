// Package drift is the pure core of the health manager: desired state and
// actual state in, actions out.
//
// Desired state is the controller's apps (version, instance count, started
// or stopped, when last updated). Actual state is the instances the DEAs
// report in their heartbeats. Analyze compares them and returns the START
// and STOP requests the health manager should send on
// cloudcontrollers.hm.requests, each with a Reason: start missing or crashed
// indices (crashed ones with exponential backoff, flagged flapping), stop
// extra and duplicate instances, stop an old version's instance once the new
// version runs at its index, and stop everything of stopped or deleted apps.
// The health manager only asks; the controller decides (PROTOCOL.md §4.1).
//
// The package does no I/O, reads no clock and keeps no global state. History
// remembers crashes and recently sent requests between passes; it changes
// only when the caller records into it, so Analyze is a pure function of its
// arguments. Package driftsim checks convergence in a simulated world.
package drift

import (
	"errors"
	"fmt"
	"time"
)

// AppState is an app's desired state.
type AppState uint8

// Desired app states.
const (
	AppStarted AppState = iota + 1
	AppStopped
)

// String returns the state as the controller spells it.
func (s AppState) String() string {
	switch s {
	case AppStarted:
		return "STARTED"
	case AppStopped:
		return "STOPPED"
	}
	return fmt.Sprintf("AppState(%d)", s)
}

// InstanceState is an instance's state as its DEA reports it.
type InstanceState uint8

// Instance states. Only Starting and Running instances are live; Crashed
// ones feed crash detection; others are ignored.
const (
	Starting InstanceState = iota + 1
	Running
	Crashed
	Stopped
)

// String returns the state as the DEA spells it.
func (s InstanceState) String() string {
	switch s {
	case Starting:
		return "STARTING"
	case Running:
		return "RUNNING"
	case Crashed:
		return "CRASHED"
	case Stopped:
		return "STOPPED"
	}
	return fmt.Sprintf("InstanceState(%d)", s)
}

func (s InstanceState) live() bool { return s == Starting || s == Running }

// App is one app's desired state, from the controller.
type App struct {
	ID string
	// Version is the live version ("<droplet sha1>-<run count>").
	Version string
	// Instances is the desired instance count: indices 0..Instances-1.
	Instances int
	State     AppState
	// UpdatedAt is the app's last update; STOP requests carry it so the
	// controller can refuse requests based on an older desired state.
	UpdatedAt time.Time
}

// Instance is one instance from a DEA heartbeat.
type Instance struct {
	App     string
	Version string
	Index   int
	// ID is the instance id the DEA assigned, unique across the actual
	// state (STOP requests name instances by id alone).
	ID    string
	State InstanceState
	DEA   string
	// Since is when the instance entered its state (state_timestamp).
	Since time.Time
	// LastSeen is when its latest heartbeat arrived.
	LastSeen time.Time
}

// Op is what an action asks the controller to do.
type Op uint8

// Operations, as in cloudcontrollers.hm.requests.
const (
	OpStart Op = iota + 1
	OpStop
)

// String returns the op as the wire spells it.
func (o Op) String() string {
	switch o {
	case OpStart:
		return "START"
	case OpStop:
		return "STOP"
	}
	return fmt.Sprintf("Op(%d)", o)
}

// Reason says why an action is requested.
type Reason uint8

// Reasons, in the order Analyze emits an app's actions.
const (
	ReasonMissing    Reason = iota + 1 // START: no instance at a desired index
	ReasonCrashed                      // START: the index's instance crashed
	ReasonExtra                        // STOP: index beyond the desired count
	ReasonDuplicate                    // STOP: more than one instance at an index
	ReasonSuperseded                   // STOP: old version, new version running at its index
	ReasonAppStopped                   // STOP: the app is stopped
	ReasonAppDeleted                   // STOP: the app no longer exists
)

var reasonNames = [...]string{
	ReasonMissing:    "missing",
	ReasonCrashed:    "crashed",
	ReasonExtra:      "extra",
	ReasonDuplicate:  "duplicate",
	ReasonSuperseded: "superseded",
	ReasonAppStopped: "app-stopped",
	ReasonAppDeleted: "app-deleted",
}

// String returns the reason as a kebab-case word for logs and metrics.
func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Action is one request for the controller: a START of Indices at Version,
// or a STOP of Instances (instance ids). It carries what
// cloudcontrollers.hm.requests needs.
type Action struct {
	App    string
	Op     Op
	Reason Reason
	// Version is the version to start (START only).
	Version string
	// Indices are the indices to start, ascending (START only).
	Indices []int
	// Instances are the instance ids to stop, ordered by index then id
	// (STOP only).
	Instances []string
	// Flapping marks a START of indices that crash repeatedly.
	Flapping bool
	// LastUpdated is the app's UpdatedAt (zero for a deleted app).
	LastUpdated time.Time
	// Text explains the action for logs.
	Text string
}

// Policy holds the health manager's timing. Start from DefaultPolicy.
type Policy struct {
	// HeartbeatTTL: an instance not heard of for longer is gone.
	HeartbeatTTL time.Duration
	// Grace: an app updated less than this ago is left alone; the
	// controller is acting on the change.
	Grace time.Duration
	// RetryAfter: a START for an index or a STOP of an instance is not
	// repeated within this time of being sent (see History.RecordSent).
	RetryAfter time.Duration
	// OrphanGrace: instances of an app the desired state does not know are
	// stopped only once they have been in their state this long, so a new
	// app is not killed before the desired state catches up.
	OrphanGrace time.Duration
	// ImmediateRestarts: the first this many crashes of an index in a row
	// restart at once; later ones back off and the index is flapping.
	ImmediateRestarts int
	// MinBackoff is the first backoff delay, doubling per further crash
	// up to MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// CrashMemory: crashes further apart than this do not form a streak,
	// and a streak whose last crash is older is forgotten.
	CrashMemory time.Duration
	// GiveUpAfter stops restarting an index after this many crashes in a
	// row until the streak is forgotten; 0 means never give up.
	GiveUpAfter int
}

// DefaultPolicy returns HM9000's proven timing, based on 10 s heartbeats.
func DefaultPolicy() Policy {
	return Policy{
		// Three missed heartbeats.
		HeartbeatTTL: 30 * time.Second,
		Grace:        30 * time.Second,
		RetryAfter:   30 * time.Second,
		// Twice the controller's desired-state scan of 60 s.
		OrphanGrace:       2 * time.Minute,
		ImmediateRestarts: 3,
		MinBackoff:        30 * time.Second,
		MaxBackoff:        16 * time.Minute,
		// Twice the largest backoff, so waiting out a backoff never
		// forgets the streak that caused it.
		CrashMemory: 32 * time.Minute,
	}
}

// ErrInvalidPolicy is returned (wrapped) by Policy.Validate.
var ErrInvalidPolicy = errors.New("drift: invalid policy")

// Validate reports the first problem with p.
func (p Policy) Validate() error {
	switch {
	case p.HeartbeatTTL <= 0:
		return fmt.Errorf("%w: HeartbeatTTL must be positive", ErrInvalidPolicy)
	case p.Grace < 0 || p.RetryAfter < 0 || p.OrphanGrace < 0:
		return fmt.Errorf("%w: negative window", ErrInvalidPolicy)
	case p.ImmediateRestarts < 0 || p.GiveUpAfter < 0:
		return fmt.Errorf("%w: negative crash count", ErrInvalidPolicy)
	case p.MinBackoff < 0 || p.MaxBackoff < p.MinBackoff:
		return fmt.Errorf("%w: need 0 <= MinBackoff <= MaxBackoff", ErrInvalidPolicy)
	case p.CrashMemory <= 0:
		return fmt.Errorf("%w: CrashMemory must be positive", ErrInvalidPolicy)
	}
	return nil
}

// Backoff returns how long after the latest crash an index that has crashed
// crashes times in a row is restarted: 0 for the first ImmediateRestarts,
// then MinBackoff doubling per crash up to MaxBackoff.
func (p Policy) Backoff(crashes int) time.Duration {
	n := crashes - p.ImmediateRestarts
	if n <= 0 {
		return 0
	}
	d := p.MinBackoff
	for i := 1; i < n && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.MaxBackoff)
}

// Flapping reports whether crashes in a row make an index flapping.
func (p Policy) Flapping(crashes int) bool { return crashes > p.ImmediateRestarts }
