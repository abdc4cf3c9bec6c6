package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/staging"
)

// Runtime is one entry of /info/runtimes and of a framework's runtimes.
type Runtime struct {
	// Version is the runtime's version string.
	Version string `json:"version"`
	// Description is shown by clients.
	Description string `json:"description,omitempty"`
	// DebugModes lists the debug modes the runtime supports.
	DebugModes []string `json:"debug_modes,omitempty"`
}

// Framework is one framework of the v1 vocabulary: the runtimes it accepts
// (the first is the default) and the buildpack kiln stages it with ("" =
// detect).
type Framework struct {
	// Runtimes are the accepted runtime names; the first is the default.
	Runtimes []string
	// Buildpack is the staging buildpack to use; "" detects one.
	Buildpack string
}

// Config configures a Controller. Start from DefaultConfig.
type Config struct {
	// ExternalURL is the base URL at which DEAs reach this controller to
	// download droplets (e.g. "http://10.0.0.5:9022"). Required.
	ExternalURL string
	// Description and Support are shown by /info.
	Description, Support string
	// AllowRegistration lets anyone create an account with POST /users;
	// when false only admins may.
	AllowRegistration bool
	// Admins are the emails of administrators (in addition to users whose
	// record has Admin set).
	Admins []string
	// TokenKey is the HMAC key signing login tokens and droplet URLs. Empty
	// means a random key per process (tokens do not survive a restart).
	TokenKey []byte
	// TokenTTL is how long a login token is valid (the original: 1 week).
	TokenTTL time.Duration
	// BcryptCost is the cost of password hashes; tests use bcrypt.MinCost.
	BcryptCost int
	// LoginFailures failed logins within LoginWindow, per account or per
	// client IP, block further attempts from it until the window ends.
	LoginFailures int
	// LoginWindow is the rate-limiting window of failed logins.
	LoginWindow time.Duration
	// HTTPSRequired refuses every authenticated request not made over
	// HTTPS (403/202); HTTPSRequiredForAdmins only those of admins.
	HTTPSRequired, HTTPSRequiredForAdmins bool
	// TrustForwardedFor takes the client IP from X-Forwarded-For (set it
	// behind a router).
	TrustForwardedFor bool
	// UserQuota and AdminQuota are the limits of users without a stored
	// quota (the shipped v1 config: 2048 MB, 20 apps, 4 URIs, 16 services).
	UserQuota, AdminQuota store.Quota
	// Domain is the cloud's base domain; when set, non-admin users may only
	// map URIs under it.
	Domain string
	// Runtimes is the /info/runtimes map.
	Runtimes map[string]Runtime
	// Frameworks is the framework vocabulary accepted on create.
	Frameworks map[string]Framework
	// MaxBodyBytes caps JSON request bodies.
	MaxBodyBytes int64
	// MaxUploadBytes caps an upload request and the assembled package
	// (the original max_droplet_size: 512 MiB).
	MaxUploadBytes int64
	// MaxConcurrentStaging bounds stagings run at once (the original: 10).
	MaxConcurrentStaging int
	// StagingTimeout bounds one staging.
	StagingTimeout time.Duration
	// DiscoverTimeout is how long one dea.discover waits for the first
	// reply; DiscoverAttempts how many are tried per instance.
	DiscoverTimeout time.Duration
	// DiscoverAttempts is the number of dea.discover rounds per instance.
	DiscoverAttempts int
	// FindTimeout bounds dea.find.droplet and healthmanager.* requests.
	FindTimeout time.Duration
	// StartPending is how long a sent start counts as in progress: a health
	// manager START for that index meanwhile is ignored.
	StartPending time.Duration
	// HeartbeatTTL forgets instances not heard of for this long (3 DEA
	// heartbeat intervals of 10 s).
	HeartbeatTTL time.Duration
	// RolloutTimeout bounds the wait for one new instance to be RUNNING.
	RolloutTimeout time.Duration
	// DropletURLTTL is the validity of signed droplet URLs.
	DropletURLTTL time.Duration
	// DropletHistory is how many droplets per app are kept for rollback.
	DropletHistory int
	// LogLines is the per-app ring buffer of recent log lines.
	LogLines int
	// StagingLogBytes caps a kept staging log.
	StagingLogBytes int
	// BulkUser and BulkPassword protect /bulk; an empty password means a
	// random one per process, told on cloudcontroller.bulk.credentials.
	BulkUser, BulkPassword string
	// ProvisionPoll is the period of polling a broker's asynchronous
	// provisioning.
	ProvisionPoll time.Duration
	// TempDir holds temporary droplets and caches ("" = os.TempDir()).
	TempDir string
	// Index is the component index announced on the bus.
	Index int
	// RouteURIs are the controller's own routes (e.g. "api.vcap.me"); when
	// set, Run registers RouteHost:RoutePort for them with the routers
	// (router.register, again on every router.start and every
	// RegisterInterval) and unregisters them when it ends.
	RouteURIs []string
	// RouteHost and RoutePort are the address routers forward to.
	RouteHost string
	RoutePort int
	// RegisterInterval is the period of route re-registration (gorouter's
	// default minimumRegisterIntervalInSeconds is 20).
	RegisterInterval time.Duration
	// StatusHost is the "ip:port" of the status endpoint (StatusHandler)
	// announced on the bus; "" announces ExternalURL's host.
	StatusHost string
	// StatusUser and StatusPassword protect /varz with basic auth when both
	// are set.
	StatusUser, StatusPassword string
	// GCInterval is the period of the blob garbage collector run by Run
	// (see CollectGarbage); 0 turns the periodic sweep off.
	GCInterval time.Duration
	// GCGrace is the age below which the garbage collector never deletes a
	// blob, referenced or not: it covers packages and droplets stored by
	// an upload or a staging that has not recorded them on the app yet.
	// It must be longer than the time between storing a blob and
	// recording it (seconds), with a wide margin.
	GCGrace time.Duration
}

// DefaultConfig returns the defaults; ExternalURL must still be set.
func DefaultConfig() Config {
	return Config{
		Description:          "kiln cloud application platform",
		Support:              "support@localhost",
		AllowRegistration:    true,
		TokenTTL:             7 * 24 * time.Hour,
		BcryptCost:           bcrypt.DefaultCost,
		LoginFailures:        5,
		LoginWindow:          5 * time.Minute,
		UserQuota:            store.Quota{MemoryMB: 2048, Apps: 20, URIs: 4, Services: 16},
		AdminQuota:           store.Quota{MemoryMB: 32768, Apps: 200, URIs: 16, Services: 32},
		Runtimes:             defaultRuntimes(),
		Frameworks:           defaultFrameworks(),
		MaxBodyBytes:         1 << 20,
		MaxUploadBytes:       512 << 20,
		MaxConcurrentStaging: 10,
		StagingTimeout:       10 * time.Minute,
		DiscoverTimeout:      2 * time.Second,
		DiscoverAttempts:     3,
		FindTimeout:          2 * time.Second,
		StartPending:         60 * time.Second,
		HeartbeatTTL:         30 * time.Second,
		RolloutTimeout:       2 * time.Minute,
		DropletURLTTL:        time.Hour,
		DropletHistory:       5,
		LogLines:             1000,
		StagingLogBytes:      1 << 20,
		BulkUser:             "bulk_api",
		ProvisionPoll:        2 * time.Second,
		RegisterInterval:     20 * time.Second,
		GCInterval:           time.Hour,
		GCGrace:              time.Hour,
	}
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	u, err := url.Parse(c.ExternalURL)
	switch {
	case c.ExternalURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("controller: config: ExternalURL %q must be an http(s) URL", c.ExternalURL)
	case c.TokenTTL <= 0 || c.LoginWindow <= 0 || c.LoginFailures <= 0:
		return errors.New("controller: config: TokenTTL, LoginWindow and LoginFailures must be positive")
	case c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost:
		return fmt.Errorf("controller: config: BcryptCost %d out of range", c.BcryptCost)
	case c.MaxBodyBytes <= 0 || c.MaxUploadBytes <= 0:
		return errors.New("controller: config: MaxBodyBytes and MaxUploadBytes must be positive")
	case c.MaxConcurrentStaging <= 0 || c.StagingTimeout <= 0:
		return errors.New("controller: config: MaxConcurrentStaging and StagingTimeout must be positive")
	case c.DiscoverTimeout <= 0 || c.DiscoverAttempts <= 0 || c.FindTimeout <= 0:
		return errors.New("controller: config: discover and find timeouts and attempts must be positive")
	case c.StartPending <= 0 || c.HeartbeatTTL <= 0 || c.RolloutTimeout <= 0 || c.DropletURLTTL <= 0:
		return errors.New("controller: config: StartPending, HeartbeatTTL, RolloutTimeout and DropletURLTTL must be positive")
	case c.DropletHistory < 1 || c.LogLines < 1 || c.StagingLogBytes < 1:
		return errors.New("controller: config: DropletHistory, LogLines and StagingLogBytes must be at least 1")
	case len(c.RouteURIs) > 0 && (c.RouteHost == "" || c.RoutePort <= 0 || c.RoutePort > 65535 || c.RegisterInterval <= 0):
		return errors.New("controller: config: RouteURIs need RouteHost, RoutePort and a positive RegisterInterval")
	case c.ProvisionPoll <= 0:
		return errors.New("controller: config: ProvisionPoll must be positive")
	case c.BulkUser == "":
		return errors.New("controller: config: empty BulkUser")
	case c.GCInterval < 0 || c.GCGrace <= 0:
		return errors.New("controller: config: GCInterval must not be negative and GCGrace must be positive")
	}
	if err := c.UserQuota.Validate(); err != nil {
		return fmt.Errorf("controller: config: user quota: %w", err)
	}
	if err := c.AdminQuota.Validate(); err != nil {
		return fmt.Errorf("controller: config: admin quota: %w", err)
	}
	for name, fw := range c.Frameworks {
		if len(fw.Runtimes) == 0 {
			return fmt.Errorf("controller: config: framework %q has no runtimes", name)
		}
	}
	return nil
}

// Stager builds droplets; *staging.Stager satisfies it. Stage must write
// the droplet to req.Droplet (or a temporary file reported in
// Result.DropletPath) and stream its log to req.LogWriter.
type Stager interface {
	Stage(ctx context.Context, req staging.Request) (staging.Result, error)
}

// The staging package's Stager is the production Stager.
var _ Stager = (*staging.Stager)(nil)

// BrokerFunc returns a client of a registered service broker.
type BrokerFunc func(b store.ServiceBroker) (services.Broker, error)

// Deps are the controller's collaborators.
type Deps struct {
	// Bus connects the controller to DEAs and health managers. Required.
	Bus bus.Bus
	// Store keeps the controller's records. Required.
	Store store.Store
	// Blobs keeps packages, droplets, caches and the resource pool. Required.
	Blobs blobstore.Blobstore
	// Stager stages packages into droplets. Required.
	Stager Stager
	// Brokers returns a client for a broker registered with
	// POST /services/v1/brokers; nil disables registration.
	Brokers BrokerFunc
	// Builtin are service brokers built into the platform, by name.
	Builtin map[string]services.Broker
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the controller's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func defaultRuntimes() map[string]Runtime {
	return map[string]Runtime{
		"ruby18":       {Version: "1.8.7", Description: "Ruby 1.8.7"},
		"ruby19":       {Version: "1.9.2", Description: "Ruby 1.9.2"},
		"node":         {Version: "0.4.12", Description: "Node.js", DebugModes: []string{"run", "suspend"}},
		"node06":       {Version: "0.6.8", Description: "Node.js 0.6", DebugModes: []string{"run", "suspend"}},
		"java":         {Version: "1.6", Description: "Java 6", DebugModes: []string{"run", "suspend"}},
		"php":          {Version: "5.3", Description: "PHP 5"},
		"erlangR14B02": {Version: "R14B02", Description: "Erlang R14B02"},
		"python2":      {Version: "2.6.5", Description: "Python 2.6.5"},
		"python3":      {Version: "3", Description: "Python 3"},
		"go":           {Version: "1", Description: "Go"},
		"nodejs":       {Version: "any", Description: "Node.js (host)"},
		"binary":       {Version: "any", Description: "Prebuilt binary"},
	}
}

func defaultFrameworks() map[string]Framework {
	ruby := []string{"ruby18", "ruby19"}
	java := []string{"java"}
	return map[string]Framework{
		"sinatra":    {Runtimes: ruby},
		"rack":       {Runtimes: ruby},
		"rails3":     {Runtimes: ruby},
		"java_web":   {Runtimes: java},
		"spring":     {Runtimes: java},
		"grails":     {Runtimes: java},
		"lift":       {Runtimes: java},
		"play":       {Runtimes: java},
		"node":       {Runtimes: []string{"node", "node06", "nodejs"}, Buildpack: "nodejs"},
		"php":        {Runtimes: []string{"php"}},
		"otp_rebar":  {Runtimes: []string{"erlangR14B02"}},
		"wsgi":       {Runtimes: []string{"python2", "python3"}, Buildpack: "python"},
		"django":     {Runtimes: []string{"python2", "python3"}, Buildpack: "python"},
		"standalone": {Runtimes: []string{"go", "binary", "ruby18", "ruby19", "java", "node", "python2", "python3", "php"}},
		"unknown":    {Runtimes: []string{"binary", "go", "nodejs", "python3"}},
		"go":         {Runtimes: []string{"go"}, Buildpack: "go"},
		"static":     {Runtimes: []string{"binary"}, Buildpack: "static"},
	}
}

// legacyFrameworks maps framework strings of old clients to v1 names
// (PROTOCOL.md §1.6), with the runtime they imply.
func legacyFrameworks() map[string][2]string {
	return map[string][2]string{
		"nodejs/1.0":                 {"node", "node"},
		"rails/1.0":                  {"rails3", "ruby18"},
		"http://b20nine.com/unknown": {"sinatra", "ruby18"},
		"sinatra/1.0":                {"sinatra", "ruby18"},
		"spring_web/1.0":             {"spring", "java"},
		"grails/1.0":                 {"grails", "java"},
	}
}
