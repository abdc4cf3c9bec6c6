package controller

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/client"
)

func TestUsersAndTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	anon := e.client()
	alice := e.user("alice@x.io")

	tests := []struct {
		name         string
		call         func() error
		status, code int
	}{
		{"duplicate registration", func() error { return anon.Register(ctx, "alice@x.io", "x") }, 400, 100},
		{"bad email", func() error { return anon.Register(ctx, "not-an-email", "x") }, 400, 100},
		{"empty password", func() error { return anon.Register(ctx, "bob@x.io", "") }, 400, 100},
		{"wrong password", func() error { _, err := e.client().Login(ctx, "alice@x.io", "nope"); return err }, 403, 200},
		{"unknown user login", func() error { _, err := e.client().Login(ctx, "ghost@x.io", "nope"); return err }, 403, 200},
		{"anonymous apps", func() error { _, err := anon.Apps(ctx); return err }, 403, 200},
		{"garbage token", func() error { c := e.client(); c.SetToken("abc.def"); _, err := c.Apps(ctx); return err }, 403, 200},
		{"user listing by non-admin", func() error { _, err := alice.Users(ctx); return err }, 403, 200},
		{"other user's record", func() error { _, err := alice.User(ctx, "admin@x.io"); return err }, 403, 200},
		{"proxy by non-admin", func() error { _, err := alice.AsUser("admin@x.io").Apps(ctx); return err }, 403, 200},
		{"delete by non-admin", func() error { return alice.DeleteUser(ctx, "alice@x.io") }, 403, 200},
		{"self-registered admin", func() error { return anon.Register(ctx, "admin@x.io", "x") }, 403, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { apiErr(t, tt.call(), tt.status, tt.code) })
	}

	info, err := alice.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.User != "alice@x.io" || info.Limits == nil || info.Usage == nil || info.Limits.Memory != 2048 || info.Name != "vcap" || info.Build != 2222 {
		t.Fatalf("info = %+v", info)
	}
	if anonInfo, err := anon.Info(ctx); err != nil || anonInfo.User != "" || anonInfo.Limits != nil {
		t.Fatalf("anonymous info = %+v, %v", anonInfo, err)
	}
	u, err := alice.User(ctx, "alice@x.io")
	if err != nil || u.Email != "alice@x.io" || u.Admin {
		t.Fatalf("user = %+v, %v", u, err)
	}

	// Password change: the old password stops working.
	if err := alice.ChangePassword(ctx, "alice@x.io", "new-pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client().Login(ctx, "alice@x.io", "pw-alice@x.io"); err == nil {
		t.Fatal("old password still works")
	}
	if _, err := e.client().Login(ctx, "alice@x.io", "new-pw"); err != nil {
		t.Fatal(err)
	}

	// Logout revokes the token.
	tok := alice.Token()
	if err := alice.Logout(ctx, "alice@x.io"); err != nil {
		t.Fatal(err)
	}
	alice.SetToken(tok)
	_, err = alice.Apps(ctx)
	apiErr(t, err, 403, 200)

	// Admin: list, proxy, delete.
	admin := e.user("admin@x.io")
	users, err := admin.Users(ctx)
	if err != nil || len(users) != 2 {
		t.Fatalf("users = %+v, %v", users, err)
	}
	_, err = admin.AsUser("ghost@x.io").Apps(ctx)
	apiErr(t, err, 403, 201)
	if apps, err := admin.AsUser("alice@x.io").Apps(ctx); err != nil || len(apps) != 0 {
		t.Fatalf("proxy apps = %v, %v", apps, err)
	}
	// An admin may mint a token for anyone without the password.
	minted := e.client()
	minted.SetToken(admin.Token())
	if _, err := minted.Login(ctx, "alice@x.io", ""); err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteUser(ctx, "alice@x.io"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, admin.DeleteUser(ctx, "alice@x.io"), 403, 201)
	_, err = minted.Apps(ctx)
	apiErr(t, err, 403, 200)
}

func TestRegistrationClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.AllowRegistration = false })
	ctx := context.Background()
	apiErr(t, e.client().Register(ctx, "bob@x.io", "pw"), 403, 200)
	// Bootstrap the admin directly, then let it register users.
	admin := e.client()
	if err := e.c.createUserRecord(ctx, "admin@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Login(ctx, "admin@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Register(ctx, "bob@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
}

func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	e := newEnv(t, func(c *Config) { c.LoginFailures = 3; c.LoginWindow = time.Minute })
	e.clock.Set(now)
	ctx := context.Background()
	e.user("carol@x.io")
	cl := e.client()
	for i := 0; i < 3; i++ {
		_, err := cl.Login(ctx, "carol@x.io", "wrong")
		apiErr(t, err, 403, 200)
	}
	// Even the right password is refused while blocked.
	_, err := cl.Login(ctx, "carol@x.io", "pw-carol@x.io")
	apiErr(t, err, 429, 203)
	e.clock.Set(now.Add(2 * time.Minute))
	if _, err := cl.Login(ctx, "carol@x.io", "pw-carol@x.io"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestTokenExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.TokenTTL = time.Hour })
	now := time.Now()
	e.clock.Set(now)
	cl := e.user("dave@x.io")
	ctx := context.Background()
	if _, err := cl.Apps(ctx); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(now.Add(2 * time.Hour))
	_, err := cl.Apps(ctx)
	apiErr(t, err, 403, 200)
}

func TestRuntimesInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rts, err := e.client().Runtimes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := client.Runtime{Version: "0.4.12", Description: "Node.js", DebugModes: []string{"run", "suspend"}}
	if diff := cmp.Diff(want, rts["node"]); diff != "" {
		t.Fatalf("node runtime (-want +got):\n%s", diff)
	}
}
