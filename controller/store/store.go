// Package store defines the cloud controller's records and the Store
// interface that keeps them: users, token revocations, quotas, apps with their
// routes (URIs), droplet history, events and crash records, service brokers,
// service instances, bindings and the resource pool index used to skip
// uploading files the controller already has.
//
// Only the controller writes these records; every other component learns about
// them over the bus. Implementations live in store/memstore (in memory: the
// fake and the single-process default for tests) and store/sqlstore (SQLite,
// the embedded default, and PostgreSQL for production and for several
// controllers sharing state). store/storetest holds the conformance suite
// every implementation passes.
//
// Conventions shared by every implementation:
//   - Every method that changes more than one record does so atomically: a
//     reader never sees half of it, and a crash leaves either all or none.
//   - Apps carry a Revision for optimistic concurrency: UpdateApp succeeds only
//     when the caller's Revision equals the stored one, and bumps it.
//   - Times are kept in UTC with microsecond precision (what PostgreSQL keeps);
//     a zero time stays zero. CreatedAt and UpdatedAt are stamped by the store.
//   - Empty slices and empty JSON documents come back as nil.
//   - Lists are paged: a ListOptions gives the page size and the opaque cursor
//     returned as Page.Next by the previous call; an empty Next means the last
//     page. Items appear in a stable order documented on each method.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Sentinel errors. Implementations wrap them with context; callers test with
// errors.Is.
var (
	// ErrNotFound means the record (or a record it refers to) does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means a record with the same key or unique name exists
	// (user email, app name per owner, service instance name per owner,
	// broker name, binding of the same app and instance).
	ErrExists = errors.New("store: already exists")
	// ErrURITaken means a URI requested for an app is held by another app.
	// URIs are unique across all owners.
	ErrURITaken = errors.New("store: uri taken")
	// ErrConflict means an app was changed by someone else since it was read:
	// the Revision given to UpdateApp is not the stored one. The API answers
	// 409; the caller may read again and retry.
	ErrConflict = errors.New("store: revision conflict")
	// ErrInUse means a record cannot be deleted while others refer to it
	// (a broker with service instances, an instance with bindings).
	ErrInUse = errors.New("store: in use")
	// ErrInvalid means a record failed validation (an empty key, an unknown
	// state, a negative count).
	ErrInvalid = errors.New("store: invalid record")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store: closed")
)

// App states (desired, set by users).
const (
	AppStarted = "STARTED"
	AppStopped = "STOPPED"
)

// Package states of an app's bits.
const (
	// PackagePending means the package was uploaded (or changed) and is not
	// staged yet.
	PackagePending = "PENDING"
	// PackageStaged means DropletHash holds a droplet of the current package.
	PackageStaged = "STAGED"
	// PackageFailed means staging failed; StagingError says why.
	PackageFailed = "FAILED"
)

// Paging limits.
const (
	// DefaultLimit is the page size used when ListOptions.Limit is zero or
	// negative.
	DefaultLimit = 100
	// MaxLimit caps ListOptions.Limit. It is large enough for a health
	// manager to read the desired state of 10,000 apps in one page.
	MaxLimit = 10000
)

// ListOptions selects one page of a list.
type ListOptions struct {
	// Limit is the largest number of items to return; <= 0 means
	// DefaultLimit, and values above MaxLimit are lowered to it.
	Limit int
	// Cursor is Page.Next of the previous page, or "" for the first page.
	// A cursor that the store cannot decode is ErrInvalid.
	Cursor string
}

// EffectiveLimit returns Limit after applying DefaultLimit and MaxLimit.
func (o ListOptions) EffectiveLimit() int {
	switch {
	case o.Limit <= 0:
		return DefaultLimit
	case o.Limit > MaxLimit:
		return MaxLimit
	default:
		return o.Limit
	}
}

// Page is one page of a list.
type Page[T any] struct {
	// Items holds at most the requested number of items.
	Items []T
	// Next is the cursor of the following page, or "" when this page is the
	// last one.
	Next string
}

// User is an account of the controller.
type User struct {
	// Email is the user's key, compared exactly (callers normalise case).
	Email string
	// PasswordHash is a bcrypt hash; the store never sees the password.
	PasswordHash string
	// Admin grants every permission.
	Admin bool
	// CreatedAt is stamped by the store.
	CreatedAt time.Time
}

// TokenRevocation records a token that must be refused until it would have
// expired anyway.
type TokenRevocation struct {
	// TokenID is the token's unique id.
	TokenID string
	// ExpiresAt is when the token itself expires; the revocation can be
	// pruned after it.
	ExpiresAt time.Time
}

// Quota is the per-user limit set. A zero field means zero allowed; callers
// that want "no quota set" look for ErrNotFound from GetQuota.
type Quota struct {
	// MemoryMB is the total memory of started instances (MemoryMB ×
	// Instances summed over STARTED apps).
	MemoryMB int
	// Apps is the number of apps.
	Apps int
	// URIs is the number of URIs per app.
	URIs int
	// Services is the number of service instances.
	Services int
}

// Usage is what a user currently consumes, counted the way Quota limits it.
type Usage struct {
	// MemoryMB sums MemoryMB × Instances over the user's STARTED apps.
	MemoryMB int
	// Apps counts the user's apps.
	Apps int
	// Services counts the user's service instances.
	Services int
}

// App is an application's desired state and metadata.
type App struct {
	// ID is the app's unique id (a UUID); CreateApp generates one when empty.
	ID string
	// Name is unique per Owner.
	Name string
	// Owner is the email of the owning user.
	Owner string
	// State is AppStarted or AppStopped.
	State string
	// Instances is the desired instance count.
	Instances int
	// MemoryMB is the memory limit per instance.
	MemoryMB int
	// DiskMB is the disk limit per instance.
	DiskMB int
	// FDs is the file descriptor limit per instance.
	FDs int
	// URIs are the routes mapped to the app, unique across all apps.
	URIs []string
	// Env holds "KEY=VALUE" entries in the user's order.
	Env []string
	// Stack is the root file system the app runs on.
	Stack string
	// Buildpack is a buildpack name or URL; "" means detect.
	Buildpack string
	// Runtime is the legacy runtime name (e.g. "ruby19").
	Runtime string
	// Framework is the legacy framework name (e.g. "sinatra").
	Framework string
	// Command overrides the start command found by staging.
	Command string
	// HealthCheckType is "port", "http", "process" or "" (default).
	HealthCheckType string
	// HealthCheckEndpoint is the HTTP path for the "http" health check.
	HealthCheckEndpoint string
	// HealthCheckTimeout is in seconds; 0 means the platform default.
	HealthCheckTimeout int
	// PackageHash is the SHA1 of the uploaded package (the app's bits).
	PackageHash string
	// DropletHash is the SHA1 of the staged droplet currently in use.
	DropletHash string
	// PackageState is PackagePending, PackageStaged or PackageFailed; ""
	// is stored as PackagePending.
	PackageState string
	// StagingError describes the last staging failure.
	StagingError string
	// StagingLogRef names the last staging log (e.g. a blob key).
	StagingLogRef string
	// Version changes whenever running instances must be restarted; DEAs
	// and the health manager compare it.
	Version string
	// Revision is the optimistic concurrency counter: 1 after CreateApp,
	// bumped by every successful UpdateApp. Callers pass back the value
	// they read.
	Revision int64
	// CreatedAt and UpdatedAt are stamped by the store.
	CreatedAt time.Time
	// UpdatedAt is stamped by the store on create and on every update.
	UpdatedAt time.Time
	// StagedAt is when the current droplet was staged (set by the caller).
	StagedAt time.Time
}

// DesiredState is the slice of an App that a health manager compares with
// what is running. It is read in bulk, so it carries no URIs or Env.
type DesiredState struct {
	// AppID is App.ID.
	AppID string
	// Name is App.Name.
	Name string
	// Owner is App.Owner.
	Owner string
	// State is App.State (always AppStarted from DesiredStates).
	State string
	// Instances is the desired instance count.
	Instances int
	// MemoryMB is the memory limit per instance.
	MemoryMB int
	// Version is App.Version: instances of another version are stale.
	Version string
	// PackageState is App.PackageState: only STAGED apps can run.
	PackageState string
	// DropletHash is the droplet instances should run.
	DropletHash string
	// UpdatedAt is App.UpdatedAt, for grace periods after a change.
	UpdatedAt time.Time
}

// Droplet is one staged droplet kept in an app's history for rollback.
type Droplet struct {
	// AppID is the app the droplet belongs to.
	AppID string
	// Hash is the droplet's SHA1 (its blobstore key).
	Hash string
	// CreatedAt is stamped by the store when the droplet is added.
	CreatedAt time.Time
}

// AppEvent is one entry of an app's audit trail.
type AppEvent struct {
	// Seq is the event's position in the store-wide sequence, assigned by
	// AddEvent; ordering by Seq is ordering by insertion.
	Seq int64
	// AppID is the app concerned.
	AppID string
	// Time is when the event happened; the store stamps it when zero.
	Time time.Time
	// Type is a short kebab-case name (e.g. "app-started").
	Type string
	// Description is free text.
	Description string
}

// Crash records one instance exit the app did not ask for.
type Crash struct {
	// Seq is assigned by AddCrash (store-wide insertion order).
	Seq int64
	// AppID is the app concerned.
	AppID string
	// InstanceID is the DEA's id of the instance.
	InstanceID string
	// Index is the instance index.
	Index int
	// Time is when the instance crashed; the store stamps it when zero.
	Time time.Time
	// ExitStatus is the process exit status.
	ExitStatus int
	// Reason is e.g. "CRASHED", "OOM".
	Reason string
}

// ServiceBroker is a registered service broker and the catalog it offers.
type ServiceBroker struct {
	// Name is the broker's unique name.
	Name string
	// URL is the broker's base URL.
	URL string
	// Username and Password authenticate the controller to the broker.
	Username string
	// Password is the basic-auth password.
	Password string
	// Catalog is the broker's last fetched catalog document.
	Catalog json.RawMessage
	// CreatedAt and UpdatedAt are stamped by the store.
	CreatedAt time.Time
	// UpdatedAt is stamped on create and on every update.
	UpdatedAt time.Time
}

// ServiceInstance is a provisioned service.
type ServiceInstance struct {
	// ID is unique; CreateServiceInstance generates a UUID when empty.
	ID string
	// Name is unique per Owner.
	Name string
	// Owner is the email of the owning user.
	Owner string
	// Label names the service offering (e.g. "postgresql-15").
	Label string
	// Plan names the plan.
	Plan string
	// BrokerName is the broker that provisioned it (may be "" for built-in
	// services); it must name an existing broker when set.
	BrokerName string
	// Credentials is the broker's provisioning answer (JSON).
	Credentials json.RawMessage
	// DashboardURL is the broker's dashboard link.
	DashboardURL string
	// State is free-form (e.g. "provisioning", "ready", "failed").
	State string
	// CreatedAt and UpdatedAt are stamped by the store.
	CreatedAt time.Time
	// UpdatedAt is stamped on create and on every update.
	UpdatedAt time.Time
}

// Binding connects an app to a service instance.
type Binding struct {
	// ID is unique; CreateBinding generates a UUID when empty.
	ID string
	// AppID must name an existing app.
	AppID string
	// InstanceID must name an existing service instance.
	InstanceID string
	// Credentials is what the broker returned for this binding (JSON).
	Credentials json.RawMessage
	// CreatedAt is stamped by the store.
	CreatedAt time.Time
}

// Resource is a file the controller already holds, keyed by content.
type Resource struct {
	// SHA1 is the hex SHA1 of the file's content.
	SHA1 string
	// Size is the file's length in bytes.
	Size int64
}

// Store keeps the controller's records. Every method is safe for concurrent
// use; after Close every method returns ErrClosed. Methods returning a record
// return a copy the caller owns.
type Store interface {
	// CreateUser adds u; ErrExists when the email is taken.
	CreateUser(ctx context.Context, u User) (User, error)
	// GetUser returns the user with email, or ErrNotFound.
	GetUser(ctx context.Context, email string) (User, error)
	// UpdateUser replaces PasswordHash and Admin of an existing user.
	UpdateUser(ctx context.Context, u User) (User, error)
	// DeleteUser removes a user and its quota. Apps and service instances
	// the user owns are left alone (delete them first if wanted).
	DeleteUser(ctx context.Context, email string) error
	// ListUsers pages through users ordered by email.
	ListUsers(ctx context.Context, opts ListOptions) (Page[User], error)

	// RevokeToken records a revocation; revoking twice keeps the later
	// expiry.
	RevokeToken(ctx context.Context, r TokenRevocation) error
	// TokenRevoked reports whether tokenID was revoked (and not pruned).
	TokenRevoked(ctx context.Context, tokenID string) (bool, error)
	// PruneRevocations removes revocations that expired at or before now
	// and returns how many went.
	PruneRevocations(ctx context.Context, now time.Time) (int, error)

	// SetQuota sets a user's quota (the user need not exist yet).
	SetQuota(ctx context.Context, owner string, q Quota) error
	// GetQuota returns a user's quota, or ErrNotFound when none was set.
	GetQuota(ctx context.Context, owner string) (Quota, error)
	// Usage counts what owner currently uses.
	Usage(ctx context.Context, owner string) (Usage, error)

	// CreateApp adds an app with Revision 1 and returns it as stored.
	// ErrExists when the owner has an app of that name, ErrURITaken when a
	// URI is held by another app, ErrInvalid for an empty name or owner,
	// an unknown state or a negative count.
	CreateApp(ctx context.Context, a App) (App, error)
	// GetApp returns the app with id, or ErrNotFound.
	GetApp(ctx context.Context, id string) (App, error)
	// GetAppByName returns owner's app called name, or ErrNotFound.
	GetAppByName(ctx context.Context, owner, name string) (App, error)
	// UpdateApp replaces every field of the app with a.ID except Owner,
	// CreatedAt and Revision, provided a.Revision is the stored revision
	// (else ErrConflict). It bumps the revision, stamps UpdatedAt and
	// returns the app as stored. ErrNotFound, ErrExists (renamed onto
	// another app's name), ErrURITaken and ErrInvalid as for CreateApp.
	UpdateApp(ctx context.Context, a App) (App, error)
	// DeleteApp removes the app with its URIs, bindings, droplet history,
	// events and crash records, atomically. ErrNotFound when missing.
	DeleteApp(ctx context.Context, id string) error
	// ListApps pages through apps ordered by ID; owner "" lists every
	// owner's apps.
	ListApps(ctx context.Context, owner string, opts ListOptions) (Page[App], error)
	// DesiredStates pages through the desired state of every STARTED app,
	// ordered by app ID. It is the health manager's bulk read and is cheap:
	// one indexed range scan per page, no per-app queries.
	DesiredStates(ctx context.Context, opts ListOptions) (Page[DesiredState], error)

	// AddDroplet records a droplet at the head of the app's history (again
	// at the head if the hash is already there) and, when keep > 0, drops
	// the oldest so that at most keep remain. It returns the droplets
	// dropped, so the caller can delete their blobs. ErrNotFound when the
	// app is missing.
	AddDroplet(ctx context.Context, d Droplet, keep int) ([]Droplet, error)
	// Droplets returns an app's droplet history, newest first (nil when
	// empty); ErrNotFound when the app is missing.
	Droplets(ctx context.Context, appID string) ([]Droplet, error)

	// AddEvent appends an event (the app must exist) and returns it with Seq
	// and Time set.
	AddEvent(ctx context.Context, e AppEvent) (AppEvent, error)
	// ListEvents pages through an app's events, oldest first (an unknown
	// app has none).
	ListEvents(ctx context.Context, appID string, opts ListOptions) (Page[AppEvent], error)
	// AddCrash appends a crash record (the app must exist) and returns it
	// with Seq and Time set.
	AddCrash(ctx context.Context, c Crash) (Crash, error)
	// ListCrashes pages through an app's crashes that happened at or after
	// since (zero: all), oldest first.
	ListCrashes(ctx context.Context, appID string, since time.Time, opts ListOptions) (Page[Crash], error)

	// CreateBroker adds a broker; ErrExists when the name is taken.
	CreateBroker(ctx context.Context, b ServiceBroker) (ServiceBroker, error)
	// GetBroker returns the broker called name, or ErrNotFound.
	GetBroker(ctx context.Context, name string) (ServiceBroker, error)
	// UpdateBroker replaces URL, credentials and catalog of a broker.
	UpdateBroker(ctx context.Context, b ServiceBroker) (ServiceBroker, error)
	// DeleteBroker removes a broker; ErrInUse while service instances
	// refer to it.
	DeleteBroker(ctx context.Context, name string) error
	// ListBrokers returns every broker ordered by name (brokers are few).
	ListBrokers(ctx context.Context) ([]ServiceBroker, error)

	// CreateServiceInstance adds an instance; ErrExists when the owner has
	// one of that name (or the ID is taken), ErrNotFound when BrokerName
	// names no broker.
	CreateServiceInstance(ctx context.Context, si ServiceInstance) (ServiceInstance, error)
	// GetServiceInstance returns the instance with id, or ErrNotFound.
	GetServiceInstance(ctx context.Context, id string) (ServiceInstance, error)
	// GetServiceInstanceByName returns owner's instance called name.
	GetServiceInstanceByName(ctx context.Context, owner, name string) (ServiceInstance, error)
	// UpdateServiceInstance replaces Plan, Credentials, DashboardURL and
	// State of an existing instance.
	UpdateServiceInstance(ctx context.Context, si ServiceInstance) (ServiceInstance, error)
	// DeleteServiceInstance removes an instance; ErrInUse while bound.
	DeleteServiceInstance(ctx context.Context, id string) error
	// ListServiceInstances pages through instances ordered by ID; owner ""
	// lists every owner's.
	ListServiceInstances(ctx context.Context, owner string, opts ListOptions) (Page[ServiceInstance], error)

	// CreateBinding binds an app to an instance. ErrNotFound when either is
	// missing, ErrExists when that pair is already bound.
	CreateBinding(ctx context.Context, b Binding) (Binding, error)
	// GetBinding returns the binding with id, or ErrNotFound.
	GetBinding(ctx context.Context, id string) (Binding, error)
	// DeleteBinding removes a binding, or returns ErrNotFound.
	DeleteBinding(ctx context.Context, id string) error
	// ListBindings returns bindings ordered by ID, filtered by appID and/or
	// instanceID when non-empty.
	ListBindings(ctx context.Context, appID, instanceID string) ([]Binding, error)

	// PutResources records files now held in the resource pool; putting a
	// known SHA1 again updates its size.
	PutResources(ctx context.Context, rs []Resource) error
	// HaveResources returns, in input order and without duplicates, the
	// resources among sha1s that the pool holds.
	HaveResources(ctx context.Context, sha1s []string) ([]Resource, error)
	// DeleteResources forgets files removed from the pool; unknown SHA1s are
	// ignored.
	DeleteResources(ctx context.Context, sha1s []string) error

	// Close releases the store. Closing twice is not an error.
	Close() error
}
