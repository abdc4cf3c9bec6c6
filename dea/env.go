package dea

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
)

// Single-tenant defaults for the space and organization names apps read
// from VCAP_APPLICATION when the controller names none.
const (
	defaultSpace        = "default"
	defaultOrganization = "default"
)

// vcapTime is the time format both generations of the platform used in
// VCAP_APPLICATION ("2013-08-12 00:05:29 +0000").
const vcapTime = "2006-01-02 15:04:05 -0700"

// vcapLimits are the limits in VCAP_APPLICATION, in MB as today's platform
// reports them.
type vcapLimits struct {
	Mem  int `json:"mem"`
	Disk int `json:"disk"`
	FDs  int `json:"fds"`
}

// vcapApplication carries the fields of the original platform (name, uris,
// version, start) and of today's (application_name, application_uris,
// application_id, application_version, started_at, space and organization)
// so apps written for either run unchanged.
type vcapApplication struct {
	InstanceID         string     `json:"instance_id"`
	InstanceIndex      int        `json:"instance_index"`
	Name               string     `json:"name"`
	ApplicationName    string     `json:"application_name"`
	URIs               []string   `json:"uris"`
	ApplicationURIs    []string   `json:"application_uris"`
	ApplicationID      string     `json:"application_id"`
	Version            string     `json:"version"`
	ApplicationVersion string     `json:"application_version"`
	Host               string     `json:"host"`
	Port               int        `json:"port"`
	Limits             vcapLimits `json:"limits"`
	SpaceName          string     `json:"space_name"`
	OrganizationName   string     `json:"organization_name"`
	Users              []string   `json:"users,omitempty"`
	Runtime            string     `json:"runtime,omitempty"`
	Start              string     `json:"start"`
	StartedAt          string     `json:"started_at"`
	StartedAtTimestamp int64      `json:"started_at_timestamp"`
	StateTimestamp     int64      `json:"state_timestamp"`
}

// vcapService is one entry of VCAP_SERVICES.
type vcapService struct {
	Name        string         `json:"name"`
	Label       string         `json:"label"`
	Plan        string         `json:"plan"`
	Tags        []string       `json:"tags"`
	Credentials map[string]any `json:"credentials"`
}

// appEnv builds the environment of an instance: the platform's variables
// first, then the user's env entries, which may override them.
func appEnv(s *protocol.Start, instanceID string, port int, limits protocol.Limits, started time.Time) ([]string, error) {
	uris := s.URIs
	if uris == nil {
		uris = []string{}
	}
	space, org := s.Space, s.Organization
	if space == "" {
		space = defaultSpace
	}
	if org == "" {
		org = defaultOrganization
	}
	app := vcapApplication{
		InstanceID: instanceID, InstanceIndex: s.Index,
		Name: s.Name, ApplicationName: s.Name,
		URIs: uris, ApplicationURIs: uris,
		ApplicationID: string(s.Droplet),
		Version:       s.Version, ApplicationVersion: s.Version,
		Host: "0.0.0.0", Port: port,
		Limits:    vcapLimits{Mem: limits.Mem, Disk: limits.Disk, FDs: limits.FDs},
		SpaceName: space, OrganizationName: org,
		Users: s.Users, Runtime: s.Runtime,
		Start: started.UTC().Format(vcapTime), StartedAt: started.UTC().Format(vcapTime),
		StartedAtTimestamp: started.Unix(), StateTimestamp: started.Unix(),
	}
	appJSON, err := json.Marshal(app)
	if err != nil {
		return nil, fmt.Errorf("encode VCAP_APPLICATION: %w", err)
	}
	services := map[string][]vcapService{}
	for _, b := range s.Services {
		label := b.Label
		if label == "" {
			label = b.Type
		}
		if label == "" {
			label = "user-provided"
		}
		tags := b.Tags
		if tags == nil {
			tags = []string{}
		}
		creds := b.Credentials
		if creds == nil {
			creds = map[string]any{}
		}
		services[label] = append(services[label], vcapService{Name: b.Name, Label: label, Plan: b.Plan, Tags: tags, Credentials: creds})
	}
	svcJSON, err := json.Marshal(services)
	if err != nil {
		return nil, fmt.Errorf("encode VCAP_SERVICES: %w", err)
	}
	p := strconv.Itoa(port)
	env := []string{
		"PORT=" + p,
		"VCAP_APP_PORT=" + p,
		"VCAP_APP_HOST=0.0.0.0",
		"VCAP_APPLICATION=" + string(appJSON),
		"VCAP_SERVICES=" + string(svcJSON),
		"INSTANCE_INDEX=" + strconv.Itoa(s.Index),
		"INSTANCE_GUID=" + instanceID,
		"MEMORY_LIMIT=" + strconv.Itoa(limits.Mem) + "m",
	}
	for _, kv := range s.Env {
		if k, _, ok := cutEnv(kv); ok && k != "" {
			env = append(env, kv)
		}
	}
	return env, nil
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return "", "", false
}
