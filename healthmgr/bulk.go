package healthmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// BulkSource reads the desired state from a controller's bulk API
// (PROTOCOL.md §1.11): GET <controller>/bulk/apps?batch_size=N&bulk_token=T
// page by page, with HTTP basic credentials asked for on the bus
// (cloudcontroller.bulk.credentials) and asked for again when the
// controller refuses them. The bulk API has no per-app filter, so BulkSource
// is not an AppSource: droplet.updated notices cause a debounced full
// reload.
//
// Set the exported fields before the first call; they are not guarded.
type BulkSource struct {
	// BatchSize is the page size asked for (default 500, HM9000's).
	BatchSize int
	// CredentialsTimeout bounds the credentials request (default 5 s).
	CredentialsTimeout time.Duration
	// MaxPageBytes bounds one page's body (default 64 MiB).
	MaxPageBytes int64
	// MaxPages bounds one reload, against a controller whose tokens never
	// run out (default 100,000).
	MaxPages int

	base   string
	bus    bus.Bus
	client *http.Client

	mu    sync.Mutex
	creds *protocol.BulkCredentials
}

var _ DesiredSource = (*BulkSource)(nil)

// NewBulkSource returns a source reading the bulk API of the controller at
// controllerURL ("http://host:port", optionally with a path prefix),
// asking for credentials on b. A nil client means one with a 10 s timeout
// per request.
func NewBulkSource(controllerURL string, b bus.Bus, client *http.Client) (*BulkSource, error) {
	u, err := url.Parse(controllerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: controller URL %q must be http(s)://host[:port]", ErrInvalidConfig, controllerURL)
	}
	if b == nil {
		return nil, fmt.Errorf("%w: bulk source needs a bus for its credentials", ErrMissingDependency)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &BulkSource{
		BatchSize:          500,
		CredentialsTimeout: 5 * time.Second,
		MaxPageBytes:       64 << 20,
		MaxPages:           100000,
		base:               strings.TrimSuffix(u.String(), "/") + "/bulk/apps",
		bus:                b,
		client:             client,
	}, nil
}

// Desired implements DesiredSource: every page, in app id order.
func (s *BulkSource) Desired(ctx context.Context) ([]protocol.BulkApp, error) {
	creds, err := s.credentials(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []protocol.BulkApp
	token := "{}"
	seen := map[string]bool{token: true}
	renewed := false
	for pages := 0; ; pages++ {
		if pages >= s.MaxPages {
			return nil, fmt.Errorf("%w: more than %d pages", ErrBadPage, s.MaxPages)
		}
		page, err := s.page(ctx, creds, token)
		if errors.Is(err, errUnauthorized) && !renewed {
			// The controller restarted with a new random password.
			renewed = true
			if creds, err = s.credentials(ctx, true); err != nil {
				return nil, err
			}
			pages--
			continue
		}
		if err != nil {
			return nil, err
		}
		for key, app := range page.Results {
			if app.ID == "" {
				app.ID = protocol.AppID(key)
			}
			out = append(out, app)
		}
		if len(page.Results) == 0 || len(page.BulkToken) == 0 {
			break
		}
		next, err := json.Marshal(page.BulkToken)
		if err != nil {
			return nil, fmt.Errorf("%w: bulk_token: %w", ErrBadPage, err)
		}
		if seen[string(next)] {
			return nil, fmt.Errorf("%w: bulk_token %s repeats", ErrBadPage, next)
		}
		seen[string(next)] = true
		token = string(next)
	}
	slices.SortFunc(out, func(a, b protocol.BulkApp) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}

// errUnauthorized marks a 401 answer inside Desired.
var errUnauthorized = fmt.Errorf("%w: bulk API refused the credentials", ErrDesiredUnavailable)

func (s *BulkSource) page(ctx context.Context, creds protocol.BulkCredentials, token string) (*protocol.BulkAppsPage, error) {
	q := url.Values{"batch_size": {strconv.Itoa(s.BatchSize)}, "bulk_token": {token}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDesiredUnavailable, err)
	}
	req.SetBasicAuth(creds.User, creds.Password)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDesiredUnavailable, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return nil, errUnauthorized
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: GET %s: %s", ErrDesiredUnavailable, s.base, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.MaxPageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read page: %w", ErrDesiredUnavailable, err)
	}
	if int64(len(body)) > s.MaxPageBytes {
		return nil, fmt.Errorf("%w: page larger than %d bytes", ErrBadPage, s.MaxPageBytes)
	}
	var page protocol.BulkAppsPage
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadPage, err)
	}
	return &page, nil
}

// credentials returns the cached credentials, asking the controllers on
// the bus when there are none or renew is set.
func (s *BulkSource) credentials(ctx context.Context, renew bool) (protocol.BulkCredentials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.creds != nil && !renew {
		return *s.creds, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.CredentialsTimeout)
	defer cancel()
	var c protocol.BulkCredentials
	if err := bus.RequestJSON(ctx, s.bus, protocol.BulkCredentialsSubject, struct{}{}, &c); err != nil {
		return c, fmt.Errorf("%w: credentials: %w", ErrDesiredUnavailable, err)
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("%w: credentials: %w", ErrDesiredUnavailable, err)
	}
	s.creds = &c
	return c, nil
}
