package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrInvalid is wrapped by every Validate error and by Decode for payloads
// that are not valid JSON of the expected shape.
var ErrInvalid = errors.New("protocol: invalid message")

// Message is implemented by every message type of this package.
type Message interface {
	// Validate reports, wrapping ErrInvalid, why the message cannot be
	// acted on (a required field missing or out of range), or nil.
	Validate() error
}

// Decode unmarshals data into a T and validates it. Unknown fields are
// ignored. The error wraps ErrInvalid.
func Decode[T any, PT interface {
	*T
	Message
}](data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%w: %T: %w", ErrInvalid, v, err)
	}
	if err := PT(&v).Validate(); err != nil {
		return v, err
	}
	return v, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Instance states (PROTOCOL.md §3.3).
const (
	StateStarting = "STARTING"
	StateRunning  = "RUNNING"
	StateStopped  = "STOPPED"
	StateCrashed  = "CRASHED"
	StateDeleted  = "DELETED"
	// StateDown and StateFlapping are reported by health managers only.
	StateDown     = "DOWN"
	StateFlapping = "FLAPPING"
)

// Exit reasons of droplet.exited.
const (
	ReasonStopped       = "STOPPED"
	ReasonCrashed       = "CRASHED"
	ReasonDEAShutdown   = "DEA_SHUTDOWN"
	ReasonDEAEvacuation = "DEA_EVACUATION"
)

// Health check types of a start message (kiln extension).
const (
	HealthCheckPort    = "port"
	HealthCheckHTTP    = "http"
	HealthCheckProcess = "process"
	HealthCheckNone    = "none"
)

// Limits are an instance's resource limits: memory and disk in MB.
type Limits struct {
	Mem  int `json:"mem"`
	Disk int `json:"disk"`
	FDs  int `json:"fds"`
}

func (l Limits) validate() error {
	if l.Mem <= 0 || l.Disk < 0 || l.FDs < 0 {
		return invalid("limits must be positive (mem %d, disk %d, fds %d)", l.Mem, l.Disk, l.FDs)
	}
	return nil
}

// Discover is the dea.discover request: can a DEA run this instance?
type Discover struct {
	Droplet AppID  `json:"droplet"`
	Limits  Limits `json:"limits"`
	Name    string `json:"name"`
	Runtime string `json:"runtime,omitempty"`
	// Sha is the staged droplet's SHA1 (the original's key is "sha").
	Sha string `json:"sha,omitempty"`
	// Stack, Index and Exclude are kiln extensions: the stack the droplet
	// needs, the index being placed, and DEA ids that must not answer.
	Stack   string   `json:"stack,omitempty"`
	Index   int      `json:"index"`
	Exclude []string `json:"exclude,omitempty"`
}

// Validate implements Message.
func (m *Discover) Validate() error {
	if m.Droplet == "" {
		return invalid("dea.discover: no droplet")
	}
	if m.Index < 0 {
		return invalid("dea.discover: negative index %d", m.Index)
	}
	return m.Limits.validate()
}

// DEAHello is a DEA's reply to dea.discover and its boot hello.
type DEAHello struct {
	ID      string  `json:"id"`
	IP      string  `json:"ip"`
	Port    int     `json:"port"`
	Version float64 `json:"version"`
}

// Validate implements Message.
func (m *DEAHello) Validate() error {
	if m.ID == "" {
		return invalid("dea hello: no id")
	}
	return nil
}

// ServiceBinding is one bound service in a start message.
type ServiceBinding struct {
	Name        string         `json:"name"`
	Type        string         `json:"type,omitempty"`
	Label       string         `json:"label"`
	Vendor      string         `json:"vendor,omitempty"`
	Version     string         `json:"version,omitempty"`
	Tags        []string       `json:"tags,omitempty"`
	Plan        string         `json:"plan,omitempty"`
	PlanOption  any            `json:"plan_option,omitempty"`
	Credentials map[string]any `json:"credentials"`
}

// Start is the dea.<id>.start message: everything a DEA needs to run one
// instance.
type Start struct {
	Droplet        AppID            `json:"droplet"`
	Index          int              `json:"index"`
	Name           string           `json:"name"`
	URIs           []string         `json:"uris"`
	Runtime        string           `json:"runtime,omitempty"`
	Framework      string           `json:"framework,omitempty"`
	SHA1           string           `json:"sha1"`
	ExecutableFile string           `json:"executableFile,omitempty"`
	ExecutableURI  string           `json:"executableUri"`
	Version        string           `json:"version"`
	Services       []ServiceBinding `json:"services"`
	Limits         Limits           `json:"limits"`
	Env            []string         `json:"env"`
	Users          []string         `json:"users,omitempty"`
	Debug          string           `json:"debug,omitempty"`
	Console        bool             `json:"console,omitempty"`
	Flapping       bool             `json:"flapping,omitempty"`

	// kiln extensions.
	Stack               string `json:"stack,omitempty"`
	Command             string `json:"command,omitempty"`
	HealthCheckType     string `json:"health_check_type,omitempty"`
	HealthCheckEndpoint string `json:"health_check_http_endpoint,omitempty"`
	// HealthCheckTimeout is how long the instance may take to become
	// healthy, in seconds; 0 means the DEA's default.
	HealthCheckTimeout int    `json:"health_check_timeout,omitempty"`
	Space              string `json:"space_name,omitempty"`
	Organization       string `json:"organization_name,omitempty"`
}

// Validate implements Message. Like the original DEA, a start without a
// droplet hash or a URI to fetch it from is refused.
func (m *Start) Validate() error {
	switch {
	case m.Droplet == "":
		return invalid("dea start: no droplet")
	case m.SHA1 == "":
		return invalid("dea start %s: no sha1", m.Droplet)
	case m.ExecutableURI == "" && m.ExecutableFile == "":
		return invalid("dea start %s: no executableUri", m.Droplet)
	case m.Index < 0:
		return invalid("dea start %s: negative index %d", m.Droplet, m.Index)
	case m.Version == "":
		return invalid("dea start %s: no version", m.Droplet)
	}
	switch m.HealthCheckType {
	case "", HealthCheckPort, HealthCheckHTTP, HealthCheckProcess, HealthCheckNone:
	default:
		return invalid("dea start %s: unknown health check type %q", m.Droplet, m.HealthCheckType)
	}
	if m.HealthCheckTimeout < 0 {
		return invalid("dea start %s: negative health check timeout", m.Droplet)
	}
	for _, u := range m.URIs {
		if err := validURI(u); err != nil {
			return invalid("dea start %s: %v", m.Droplet, err)
		}
	}
	return m.Limits.validate()
}

// InstanceFilter selects instances of one app. Every non-empty field is a
// filter; all must match. It is the dea.stop message and the body of
// dea.find.droplet.
type InstanceFilter struct {
	Droplet   AppID    `json:"droplet"`
	Version   string   `json:"version,omitempty"`
	Instances []string `json:"instances,omitempty"`
	Indices   []int    `json:"indices,omitempty"`
	States    []string `json:"states,omitempty"`
}

// Validate implements Message.
func (f *InstanceFilter) Validate() error {
	if f.Droplet == "" {
		return invalid("instance filter: no droplet")
	}
	return nil
}

// Match reports whether an instance with these attributes passes the filter.
func (f *InstanceFilter) Match(app AppID, version, instance string, index int, state string) bool {
	if app != f.Droplet || (f.Version != "" && f.Version != version) {
		return false
	}
	if len(f.Instances) > 0 && !contains(f.Instances, instance) {
		return false
	}
	if len(f.Indices) > 0 && !contains(f.Indices, index) {
		return false
	}
	if len(f.States) > 0 && !contains(f.States, state) {
		return false
	}
	return true
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Stop is the dea.stop message.
type Stop = InstanceFilter

// FindDroplet is the dea.find.droplet request.
type FindDroplet struct {
	InstanceFilter
	IncludeStats bool `json:"include_stats,omitempty"`
}

// Update is the dea.update message: the app's new URIs.
type Update struct {
	Droplet AppID    `json:"droplet"`
	URIs    []string `json:"uris"`
}

// Validate implements Message.
func (m *Update) Validate() error {
	if m.Droplet == "" {
		return invalid("dea.update: no droplet")
	}
	for _, u := range m.URIs {
		if err := validURI(u); err != nil {
			return invalid("dea.update %s: %v", m.Droplet, err)
		}
	}
	return nil
}

// Usage is an instance's resource usage.
type Usage struct {
	Time string  `json:"time"`
	CPU  float64 `json:"cpu"`
	Mem  int64   `json:"mem"`  // KB
	Disk int64   `json:"disk"` // bytes
}

// InstanceStats are the stats of a RUNNING instance in a find reply.
type InstanceStats struct {
	Name      string   `json:"name"`
	Host      string   `json:"host"`
	Port      int      `json:"port"`
	URIs      []string `json:"uris"`
	Uptime    float64  `json:"uptime"`
	MemQuota  int64    `json:"mem_quota"`
	DiskQuota int64    `json:"disk_quota"`
	FDsQuota  int      `json:"fds_quota"`
	Cores     int      `json:"cores"`
	Usage     *Usage   `json:"usage,omitempty"`
}

// FindDropletReply is one instance's answer to dea.find.droplet.
type FindDropletReply struct {
	DEA            string         `json:"dea"`
	Version        string         `json:"version"`
	Droplet        AppID          `json:"droplet"`
	Instance       string         `json:"instance"`
	Index          int            `json:"index"`
	State          string         `json:"state"`
	StateTimestamp float64        `json:"state_timestamp"`
	FileURI        string         `json:"file_uri"`
	Credentials    []string       `json:"credentials,omitempty"`
	Staged         string         `json:"staged"`
	Stats          *InstanceStats `json:"stats,omitempty"`
	// Host and Port are the instance's address (kiln extension).
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
}

// Validate implements Message.
func (m *FindDropletReply) Validate() error {
	if m.Droplet == "" || m.Instance == "" {
		return invalid("find.droplet reply: no droplet or instance")
	}
	return nil
}

// InstanceHeartbeat is one instance in a heartbeat.
type InstanceHeartbeat struct {
	Droplet        AppID   `json:"droplet"`
	Version        string  `json:"version"`
	Instance       string  `json:"instance"`
	Index          int     `json:"index"`
	State          string  `json:"state"`
	StateTimestamp float64 `json:"state_timestamp"`
}

// Heartbeat is the dea.heartbeat message.
type Heartbeat struct {
	DEA      string              `json:"dea"`
	Droplets []InstanceHeartbeat `json:"droplets"`
}

// Validate implements Message.
func (m *Heartbeat) Validate() error {
	for i, d := range m.Droplets {
		if d.Droplet == "" || d.Instance == "" || d.Index < 0 || d.State == "" {
			return invalid("dea.heartbeat from %q: droplet %d incomplete", m.DEA, i)
		}
	}
	return nil
}

// Exited is the droplet.exited message.
type Exited struct {
	Droplet        AppID  `json:"droplet"`
	Version        string `json:"version"`
	Instance       string `json:"instance"`
	Index          int    `json:"index"`
	Reason         string `json:"reason"`
	CrashTimestamp int64  `json:"crash_timestamp,omitempty"`
	// ExitStatus and ExitDescription as later DEAs sent them.
	ExitStatus      int    `json:"exit_status"`
	ExitDescription string `json:"exit_description,omitempty"`
}

// Validate implements Message.
func (m *Exited) Validate() error {
	if m.Droplet == "" || m.Instance == "" || m.Index < 0 {
		return invalid("droplet.exited: incomplete")
	}
	switch m.Reason {
	case ReasonStopped, ReasonCrashed, ReasonDEAShutdown, ReasonDEAEvacuation:
		return nil
	}
	return invalid("droplet.exited %s: unknown reason %q", m.Droplet, m.Reason)
}

// Updated is the droplet.updated message.
type Updated struct {
	Droplet AppID `json:"droplet"`
}

// Validate implements Message.
func (m *Updated) Validate() error {
	if m.Droplet == "" {
		return invalid("droplet.updated: no droplet")
	}
	return nil
}

// Advertise is the dea.advertise message. The original sent id,
// available_memory and runtimes; kiln DEAs add their whole load so peers
// can compute relative placement delays.
type Advertise struct {
	ID              string   `json:"id"`
	AvailableMemory int      `json:"available_memory"`
	Runtimes        []string `json:"runtimes"`

	Stacks         []string       `json:"stacks,omitempty"`
	MaxMemory      int            `json:"max_memory,omitempty"`
	ReservedMemory int            `json:"reserved_memory,omitempty"`
	MaxDisk        int            `json:"max_disk,omitempty"`
	ReservedDisk   int            `json:"reserved_disk,omitempty"`
	Instances      int            `json:"num_instances,omitempty"`
	MaxInstances   int            `json:"max_instances,omitempty"`
	CPULoad        float64        `json:"cpu_load,omitempty"`
	AppCounts      map[string]int `json:"app_id_to_count,omitempty"`
	Draining       bool           `json:"draining,omitempty"`
}

// Validate implements Message.
func (m *Advertise) Validate() error {
	if m.ID == "" {
		return invalid("dea.advertise: no id")
	}
	if m.AvailableMemory < 0 || m.MaxMemory < 0 || m.ReservedMemory < 0 {
		return invalid("dea.advertise %s: negative memory", m.ID)
	}
	return nil
}

// DEAStatusReply is a DEA's answer to dea.status.
type DEAStatusReply struct {
	DEAHello
	MaxMemory      int     `json:"max_memory"`
	ReservedMemory int     `json:"reserved_memory"`
	UsedMemory     float64 `json:"used_memory"`
	NumClients     int     `json:"num_clients"`
	State          string  `json:"state,omitempty"`
}

// Register is the router.register and router.unregister message.
type Register struct {
	DEA               string            `json:"dea,omitempty"`
	App               AppID             `json:"app,omitempty"`
	Host              string            `json:"host"`
	Port              int               `json:"port"`
	URIs              []string          `json:"uris"`
	Tags              map[string]string `json:"tags,omitempty"`
	PrivateInstanceID string            `json:"private_instance_id,omitempty"`
	// PrivateInstanceIndex is the instance index as a string, as later
	// routers carry it.
	PrivateInstanceIndex string `json:"private_instance_index,omitempty"`
}

// Validate implements Message.
func (m *Register) Validate() error {
	if m.Host == "" {
		return invalid("router.register: no host")
	}
	if strings.ContainsAny(m.Host, " /\t\r\n") {
		return invalid("router.register: bad host %q", m.Host)
	}
	if m.Port <= 0 || m.Port > 65535 {
		return invalid("router.register %s: bad port %d", m.Host, m.Port)
	}
	if len(m.URIs) == 0 {
		return invalid("router.register %s:%d: no uris", m.Host, m.Port)
	}
	for _, u := range m.URIs {
		if err := validURI(u); err != nil {
			return invalid("router.register %s:%d: %v", m.Host, m.Port, err)
		}
	}
	return nil
}

// Addr returns host:port of the endpoint.
func (m *Register) Addr() string { return net.JoinHostPort(m.Host, fmt.Sprint(m.Port)) }

// RouterHello is the router.start message and the reply to router.greet.
type RouterHello struct {
	ID                               string   `json:"id"`
	Version                          float64  `json:"version,omitempty"`
	Hosts                            []string `json:"hosts,omitempty"`
	MinimumRegisterIntervalInSeconds int      `json:"minimumRegisterIntervalInSeconds,omitempty"`
	PruneThresholdInSeconds          int      `json:"pruneThresholdInSeconds,omitempty"`
}

// Validate implements Message.
func (m *RouterHello) Validate() error {
	if m.MinimumRegisterIntervalInSeconds < 0 || m.PruneThresholdInSeconds < 0 {
		return invalid("router.start: negative interval")
	}
	return nil
}

// HMStatusRequest is the healthmanager.status request; State is FLAPPING
// or CRASHED.
type HMStatusRequest struct {
	Droplet AppID  `json:"droplet"`
	Version string `json:"version,omitempty"`
	State   string `json:"state"`
}

// Validate implements Message.
func (m *HMStatusRequest) Validate() error {
	if m.Droplet == "" {
		return invalid("healthmanager.status: no droplet")
	}
	if m.State != StateFlapping && m.State != StateCrashed {
		return invalid("healthmanager.status %s: state must be FLAPPING or CRASHED, got %q", m.Droplet, m.State)
	}
	return nil
}

// IndexSince is a flapping index and since when (epoch seconds).
type IndexSince struct {
	Index int   `json:"index"`
	Since int64 `json:"since"`
}

// InstanceSince is a crashed instance and its crash time (epoch seconds).
type InstanceSince struct {
	Instance string `json:"instance"`
	Since    int64  `json:"since"`
}

// HMStatusReply answers healthmanager.status: Indices for FLAPPING,
// Instances for CRASHED.
type HMStatusReply struct {
	Indices   []IndexSince    `json:"indices,omitempty"`
	Instances []InstanceSince `json:"instances,omitempty"`
}

// DropletVersion names one version of an app.
type DropletVersion struct {
	Droplet AppID  `json:"droplet"`
	Version string `json:"version"`
}

// HMHealthRequest is the healthmanager.health request.
type HMHealthRequest struct {
	Droplets []DropletVersion `json:"droplets"`
}

// Validate implements Message.
func (m *HMHealthRequest) Validate() error {
	for _, d := range m.Droplets {
		if d.Droplet == "" {
			return invalid("healthmanager.health: empty droplet")
		}
	}
	return nil
}

// HMHealthReply is one app's answer to healthmanager.health.
type HMHealthReply struct {
	Droplet AppID  `json:"droplet"`
	Version string `json:"version"`
	Healthy int    `json:"healthy"`
}

// Operations of an HMRequest.
const (
	OpStart = "START"
	OpStop  = "STOP"
)

// HMRequest is a health manager's START or STOP request to the controllers
// on cloudcontrollers.hm.requests.
type HMRequest struct {
	Droplet     AppID    `json:"droplet"`
	Op          string   `json:"op"`
	LastUpdated int64    `json:"last_updated"`
	Version     string   `json:"version,omitempty"`
	Indices     []int    `json:"indices,omitempty"`
	Instances   []string `json:"instances,omitempty"`
	Flapping    bool     `json:"flapping,omitempty"`
	// Reason says why (kiln extension), e.g. "missing", "crashed", "extra".
	Reason string `json:"reason,omitempty"`
}

// Validate implements Message.
func (m *HMRequest) Validate() error {
	if m.Droplet == "" {
		return invalid("hm request: no droplet")
	}
	switch m.Op {
	case OpStart:
		if len(m.Indices) == 0 {
			return invalid("hm START %s: no indices", m.Droplet)
		}
		for _, i := range m.Indices {
			if i < 0 {
				return invalid("hm START %s: negative index", m.Droplet)
			}
		}
	case OpStop:
		if len(m.Instances) == 0 {
			return invalid("hm STOP %s: no instances", m.Droplet)
		}
	default:
		return invalid("hm request %s: unknown op %q", m.Droplet, m.Op)
	}
	return nil
}

// Component is a component's discover record (vcap.component.announce and
// the reply to vcap.component.discover).
type Component struct {
	Type        string   `json:"type"`
	Index       int      `json:"index"`
	UUID        string   `json:"uuid"`
	Host        string   `json:"host"`
	Credentials []string `json:"credentials,omitempty"`
	Start       string   `json:"start"`
	Uptime      string   `json:"uptime,omitempty"`
}

// Validate implements Message.
func (m *Component) Validate() error {
	if m.Type == "" || m.UUID == "" {
		return invalid("component: no type or uuid")
	}
	return nil
}

// StagingRequest asks a stager to build a droplet.
type StagingRequest struct {
	App         AppID    `json:"app_id"`
	TaskID      string   `json:"task_id"`
	DownloadURI string   `json:"download_uri"`
	UploadURI   string   `json:"upload_uri"`
	Buildpack   string   `json:"buildpack,omitempty"`
	Stack       string   `json:"stack,omitempty"`
	Env         []string `json:"env,omitempty"`
	Limits      Limits   `json:"limits"`
}

// Validate implements Message.
func (m *StagingRequest) Validate() error {
	if m.App == "" || m.TaskID == "" || m.DownloadURI == "" || m.UploadURI == "" {
		return invalid("staging request: app_id, task_id, download_uri and upload_uri are required")
	}
	return nil
}

// StagingReply is a stager's answer.
type StagingReply struct {
	TaskID            string `json:"task_id"`
	Error             string `json:"error,omitempty"`
	DetectedBuildpack string `json:"detected_buildpack,omitempty"`
	StartCommand      string `json:"start_command,omitempty"`
	DropletSHA1       string `json:"droplet_sha1,omitempty"`
	TaskLog           string `json:"task_log,omitempty"`
}

// Validate implements Message.
func (m *StagingReply) Validate() error {
	if m.TaskID == "" {
		return invalid("staging reply: no task_id")
	}
	return nil
}

// Log sources.
const (
	SourceApp     = "APP"
	SourceDEA     = "DEA"
	SourceStaging = "STG"
	SourceRouter  = "RTR"
)

// LogLine is one line of an app's log on LogSubject (kiln extension).
type LogLine struct {
	App      AppID  `json:"app"`
	Instance string `json:"instance,omitempty"`
	Index    int    `json:"index"`
	Source   string `json:"source"`
	// Stream is "stdout" or "stderr".
	Stream    string `json:"stream,omitempty"`
	Timestamp int64  `json:"timestamp"` // Unix nanoseconds
	Line      string `json:"line"`
}

// Validate implements Message.
func (m *LogLine) Validate() error {
	if m.App == "" || m.Source == "" {
		return invalid("log line: no app or source")
	}
	return nil
}

// validURI checks a route: a host name (wildcards and a port allowed) with
// an optional path, no scheme, query or whitespace.
func validURI(u string) error {
	host, _, _ := strings.Cut(u, "/")
	if host == "" || len(u) > 1024 || strings.ContainsAny(u, " \t\r\n?#\\") {
		return fmt.Errorf("bad uri %q", u)
	}
	return nil
}
