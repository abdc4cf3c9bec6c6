package protocol

// BulkCredentials answer a BulkCredentialsSubject request.
type BulkCredentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Validate implements Message.
func (m *BulkCredentials) Validate() error {
	if m.User == "" || m.Password == "" {
		return invalid("bulk credentials: user and password are required")
	}
	return nil
}

// BulkApp is one app's desired state in GET /bulk/apps (the fields health
// managers read).
type BulkApp struct {
	ID           AppID  `json:"id"`
	Name         string `json:"name,omitempty"`
	Version      string `json:"version"`
	Instances    int    `json:"instances"`
	State        string `json:"state"`
	PackageState string `json:"package_state"`
	// UpdatedAt is the epoch second of the last desired-state change; it
	// is what HMRequest.LastUpdated must echo.
	UpdatedAt int64 `json:"updated_at"`
}

// BulkAppsPage is a page of GET /bulk/apps?batch_size=N&bulk_token=T.
// Results are keyed by app id; BulkToken is passed back (JSON-encoded) to
// get the next page and is empty after the last one.
type BulkAppsPage struct {
	Results   map[string]BulkApp `json:"results"`
	BulkToken map[string]any     `json:"bulk_token"`
}
