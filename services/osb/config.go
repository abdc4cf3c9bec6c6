// Package osb speaks the Open Service Broker API (version 2.x) for kiln: a
// Client that implements services.Broker against any OSB broker reachable
// by URL with basic auth, so the controller can register third-party
// brokers, and a Server that exposes any services.Broker over the same API,
// so kiln's built-in brokers plug into other platforms. Errors travel as
// OSB error bodies ({error, description}) and statuses, and map back to the
// services sentinel errors on the client side.
package osb

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// APIVersion is the OSB API version kiln speaks.
const APIVersion = "2.17"

// Header names of the OSB API.
const (
	HeaderAPIVersion      = "X-Broker-API-Version"
	HeaderRequestIdentity = "X-Broker-API-Request-Identity"
)

// Config configures a Client (URL, Username, Password, HTTPClient,
// APIVersion) or a Server (Username, Password, MinAPIVersion, MaxBodyBytes,
// Logger, Registerer). One type serves both so that a broker's address and
// credentials can be written down once.
type Config struct {
	// URL is the broker's base URL (client only), e.g.
	// "http://127.0.0.1:8080"; the /v2/... paths are appended to it.
	URL string
	// Username and Password are the broker's basic-auth credentials. A
	// client sends them when set; a server requires them when set and
	// serves without authentication when both are empty.
	Username, Password string
	// HTTPClient sends the client's requests; nil means a client with a
	// 60 s timeout, the minimum the OSB API asks platforms to wait for a
	// broker's answer.
	HTTPClient *http.Client
	// APIVersion is the X-Broker-API-Version a client sends (default
	// APIVersion).
	APIVersion string
	// MinAPIVersion is the oldest X-Broker-API-Version a server accepts
	// (default "2.13"); older or missing versions get 412 Precondition
	// Failed. 2.13 is where the request and response shapes kiln reads and
	// writes (context object, organization/space guids, async operations,
	// {error, description} bodies) had all settled.
	MinAPIVersion string
	// MaxBodyBytes bounds a server's request bodies (default 1 MiB: OSB
	// request bodies are small JSON objects; parameters are the only
	// free-form part).
	MaxBodyBytes int64
	// Logger receives a server's request log; nil discards it.
	Logger *slog.Logger
	// Registerer receives a server's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{
		APIVersion:    APIVersion,
		MinAPIVersion: "2.13",
		MaxBodyBytes:  1 << 20,
	}
}

// defaultTimeout is the HTTP client timeout when Config.HTTPClient is nil.
const defaultTimeout = 60 * time.Second

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.APIVersion == "" {
		c.APIVersion = d.APIVersion
	}
	if c.MinAPIVersion == "" {
		c.MinAPIVersion = d.MinAPIVersion
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	return c
}

// Validate reports whether c is usable; zero fields count as their
// defaults. The URL is checked only when set (NewClient requires it).
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, err := parseVersion(c.APIVersion); err != nil {
		return fmt.Errorf("osb: APIVersion: %w", err)
	}
	if _, err := parseVersion(c.MinAPIVersion); err != nil {
		return fmt.Errorf("osb: MinAPIVersion: %w", err)
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("osb: set both Username and Password, or neither")
	}
	if c.MaxBodyBytes < 0 {
		return fmt.Errorf("osb: MaxBodyBytes %d is negative", c.MaxBodyBytes)
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil {
			return fmt.Errorf("osb: URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("osb: URL %q is not an absolute http(s) URL", c.URL)
		}
	}
	return nil
}

// version is a parsed "major.minor" API version.
type version struct{ major, minor int }

func (v version) less(o version) bool {
	return v.major < o.major || (v.major == o.major && v.minor < o.minor)
}

// parseVersion parses "2.17"; only major version 2 exists.
func parseVersion(s string) (version, error) {
	maj, min, ok := strings.Cut(strings.TrimSpace(s), ".")
	if !ok {
		return version{}, fmt.Errorf("version %q is not major.minor", s)
	}
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil || a < 0 || b < 0 {
		return version{}, fmt.Errorf("version %q is not major.minor", s)
	}
	if a != 2 {
		return version{}, fmt.Errorf("version %q: only major version 2 is supported", s)
	}
	return version{a, b}, nil
}
