package controller

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/controller/store"
)

// tokenClaims is the signed content of a login token.
type tokenClaims struct {
	ID      string `json:"i"`
	Email   string `json:"e"`
	Expires int64  `json:"x"`
}

// issueToken returns a token for email: base64url(claims) "." base64url(HMAC).
// Tokens are never stored; logout stores a revocation of the token id.
func (c *Controller) issueToken(email string) string {
	cl := tokenClaims{ID: hex.EncodeToString(randomBytes(12)), Email: email, Expires: c.now().Add(c.cfg.TokenTTL).Unix()}
	b, _ := json.Marshal(cl)
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + base64.RawURLEncoding.EncodeToString(c.mac("token", payload))
}

func (c *Controller) mac(purpose, msg string) []byte {
	h := hmac.New(sha256.New, c.key)
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// parseToken verifies a token's signature and expiry.
func (c *Controller) parseToken(tok string) (tokenClaims, error) {
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 4096 {
		return tokenClaims{}, ErrForbidden
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, c.mac("token", payload)) {
		return tokenClaims{}, ErrForbidden
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokenClaims{}, ErrForbidden
	}
	var cl tokenClaims
	if err := json.Unmarshal(b, &cl); err != nil || cl.ID == "" || cl.Email == "" {
		return tokenClaims{}, ErrForbidden
	}
	if c.now().Unix() >= cl.Expires {
		return tokenClaims{}, ErrForbidden
	}
	return cl, nil
}

// userForToken returns the user a valid, unrevoked token belongs to.
func (c *Controller) userForToken(ctx context.Context, tok string) (store.User, error) {
	cl, err := c.parseToken(tok)
	if err != nil {
		return store.User{}, err
	}
	revoked, err := c.deps.Store.TokenRevoked(ctx, cl.ID)
	if err != nil {
		return store.User{}, fmt.Errorf("token: %w", err)
	}
	if revoked {
		return store.User{}, ErrForbidden
	}
	u, err := c.deps.Store.GetUser(ctx, cl.Email)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, ErrForbidden
	}
	if err != nil {
		return store.User{}, fmt.Errorf("token user: %w", err)
	}
	return u, nil
}

func (c *Controller) isAdmin(u store.User) bool {
	return u.Admin || slices.Contains(c.cfg.Admins, u.Email)
}

func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func constantEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func validEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && at < len(s)-1 && len(s) <= 254 && !strings.ContainsAny(s, " \t\r\n/\\") && strings.Count(s, "@") == 1
}

type credentialsBody struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// createUser is POST /users.
func (c *Controller) createUser(k *call) error {
	if !c.cfg.AllowRegistration && !k.admin {
		return ErrForbidden
	}
	var body credentialsBody
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	email := normalizeEmail(body.Email)
	if !validEmail(email) {
		return ErrBadRequest.with("invalid email")
	}
	if body.Password == "" || len(body.Password) > 72 {
		return ErrBadRequest.with("password must be 1 to 72 bytes")
	}
	// Admin accounts named in the config are created by an admin or with
	// CreateUser, never by self-registration.
	if slices.Contains(c.cfg.Admins, email) && !k.admin {
		return ErrForbidden
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(body.Password), c.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	_, err = c.deps.Store.CreateUser(k.r.Context(), store.User{Email: email, PasswordHash: string(hash), Admin: slices.Contains(c.cfg.Admins, email)})
	if errors.Is(err, store.ErrExists) {
		return ErrBadRequest.with("user already exists")
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	c.log.Info("user-created", "email", email)
	k.w.WriteHeader(http.StatusNoContent)
	return nil
}

// createUserRecord creates a user directly (for bootstrapping an admin
// when registration is closed).
func (c *Controller) createUserRecord(ctx context.Context, email, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), c.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	email = normalizeEmail(email)
	_, err = c.deps.Store.CreateUser(ctx, store.User{Email: email, PasswordHash: string(hash), Admin: slices.Contains(c.cfg.Admins, email)})
	if err != nil {
		return fmt.Errorf("create user %s: %w", email, err)
	}
	return nil
}

// CreateUser adds a user (an admin when its email is in Config.Admins),
// for bootstrapping a platform whose registration is closed.
func (c *Controller) CreateUser(ctx context.Context, email, password string) error {
	return c.createUserRecord(ctx, email, password)
}

// login is POST /users/:email/tokens.
func (c *Controller) login(k *call) error {
	email := normalizeEmail(k.param("email"))
	ip := c.clientIP(k.r)
	now := c.now()
	if wait := c.logins.blocked(now, "u:"+email, "ip:"+ip); wait > 0 {
		return ErrTooManyLogins.with(wait.Round(time.Second).String())
	}
	var body credentialsBody
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	u, err := c.deps.Store.GetUser(k.r.Context(), email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("login: %w", err)
	}
	// An admin may mint a token for anyone without the password.
	if err == nil && k.caller != nil && k.admin {
		writeJSON(k.w, http.StatusOK, map[string]string{"token": c.issueToken(email)})
		return nil
	}
	hash := []byte(u.PasswordHash)
	if err != nil {
		// Spend the same time for unknown users as for a wrong password.
		hash = c.dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(body.Password)) != nil || err != nil {
		c.logins.fail(now, "u:"+email, "ip:"+ip)
		c.m.loginFailures.Inc()
		c.log.Info("login-failed", "email", email, "ip", ip)
		return ErrForbidden
	}
	c.logins.reset("u:" + email)
	writeJSON(k.w, http.StatusOK, map[string]string{"token": c.issueToken(email)})
	return nil
}

// logout is DELETE /users/:email/tokens (kiln extension): it revokes the
// token of the request.
func (c *Controller) logout(k *call) error {
	cl, err := c.parseToken(strings.TrimSpace(k.r.Header.Get("Authorization")))
	if err != nil {
		return err
	}
	if normalizeEmail(k.param("email")) != cl.Email {
		return ErrForbidden
	}
	if err := c.deps.Store.RevokeToken(k.r.Context(), store.TokenRevocation{TokenID: cl.ID, ExpiresAt: time.Unix(cl.Expires, 0)}); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	k.w.WriteHeader(http.StatusNoContent)
	return nil
}

// getUser is GET /users/:email (self or admin).
func (c *Controller) getUser(k *call) error {
	email := normalizeEmail(k.param("email"))
	if email != k.user.Email && !k.admin {
		return ErrForbidden
	}
	u, err := c.deps.Store.GetUser(k.r.Context(), email)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUserNotFound
	}
	if err != nil {
		return fmt.Errorf("get user: %w", err)
	}
	writeJSON(k.w, http.StatusOK, map[string]any{"email": u.Email, "admin": c.isAdmin(u)})
	return nil
}

// updateUser is PUT /users/:email: it changes the caller's own password
// (an admin may change anyone's).
func (c *Controller) updateUser(k *call) error {
	email := normalizeEmail(k.param("email"))
	if email != k.user.Email && !k.admin {
		return ErrForbidden
	}
	var body credentialsBody
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	if body.Password == "" || len(body.Password) > 72 {
		return ErrBadRequest.with("password must be 1 to 72 bytes")
	}
	u, err := c.deps.Store.GetUser(k.r.Context(), email)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUserNotFound
	}
	if err != nil {
		return fmt.Errorf("get user: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(body.Password), c.cfg.BcryptCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	u.PasswordHash = string(hash)
	if _, err := c.deps.Store.UpdateUser(k.r.Context(), u); err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	k.w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteUser is DELETE /users/:email (admin): it deletes the user's apps and
// service instances, then the user.
func (c *Controller) deleteUser(k *call) error {
	ctx := k.r.Context()
	email := normalizeEmail(k.param("email"))
	if _, err := c.deps.Store.GetUser(ctx, email); errors.Is(err, store.ErrNotFound) {
		return ErrUserNotFound
	} else if err != nil {
		return fmt.Errorf("get user: %w", err)
	}
	apps, err := c.allApps(ctx, email)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := c.removeApp(ctx, a); err != nil {
			return err
		}
	}
	insts, err := c.allInstances(ctx, email)
	if err != nil {
		return err
	}
	for _, si := range insts {
		if err := c.deprovision(ctx, si); err != nil {
			return err
		}
	}
	if err := c.deps.Store.DeleteUser(ctx, email); err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	c.log.Info("user-deleted", "email", email, "by", k.caller.Email)
	k.w.WriteHeader(http.StatusNoContent)
	return nil
}

// listUsers is GET /users (admin).
func (c *Controller) listUsers(k *call) error {
	ctx := k.r.Context()
	out := []map[string]any{}
	opts := store.ListOptions{Limit: store.MaxLimit}
	for {
		page, err := c.deps.Store.ListUsers(ctx, opts)
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		for _, u := range page.Items {
			apps, err := c.allApps(ctx, u.Email)
			if err != nil {
				return err
			}
			list := []map[string]string{}
			for _, a := range apps {
				list = append(list, map[string]string{"name": a.Name, "state": a.State})
			}
			out = append(out, map[string]any{"email": u.Email, "admin": c.isAdmin(u), "apps": list})
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

func (c *Controller) clientIP(r *http.Request) string {
	if c.cfg.TrustForwardedFor {
		if f := r.Header.Get("X-Forwarded-For"); f != "" {
			first, _, _ := strings.Cut(f, ",")
			return strings.TrimSpace(first)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter counts failures per key in fixed windows.
type limiter struct {
	max    int
	window time.Duration

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	start time.Time
	n     int
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, keys: map[string]*failures{}}
}

// blocked returns how long the most restricted of keys must still wait.
func (l *limiter) blocked(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		f := l.keys[k]
		if f == nil {
			continue
		}
		if now.Sub(f.start) >= l.window {
			delete(l.keys, k)
			continue
		}
		if f.n >= l.max {
			wait = max(wait, f.start.Add(l.window).Sub(now))
		}
	}
	return wait
}

func (l *limiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.keys) > 100000 {
		// Bound memory under a spray of names: forget expired windows.
		for k, f := range l.keys {
			if now.Sub(f.start) >= l.window {
				delete(l.keys, k)
			}
		}
	}
	for _, k := range keys {
		f := l.keys[k]
		if f == nil || now.Sub(f.start) >= l.window {
			f = &failures{start: now}
			l.keys[k] = f
		}
		f.n++
	}
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	delete(l.keys, key)
	l.mu.Unlock()
}
