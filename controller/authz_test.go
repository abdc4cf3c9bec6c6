package controller

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestAuthorizationMatrix calls every route of the table as another user
// and anonymously, aimed at one user's app, service, droplet and account,
// and checks that nothing of it is revealed or changed.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	newFakeDEA(t, e.bus, "dea-authz")
	bob := e.user("bob@x.io")
	alice := e.user("alice@x.io")
	pushStaged(t, bob, "bobapp", map[string]string{"secret.txt": "bob's secret"})
	if err := bob.CreateService(ctx, "bobsvc", "redis", "", "free"); err != nil {
		t.Fatal(err)
	}
	if err := bob.BindService(ctx, "bobapp", "bobsvc"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Start(ctx, "bobapp"); err != nil {
		t.Fatal(err)
	}
	before, _ := bob.App(ctx, "bobapp")
	rec, err := e.store.GetAppByName(ctx, "bob@x.io", "bobapp")
	if err != nil {
		t.Fatal(err)
	}
	fill := map[string]string{
		":name": "bobapp", ":alias": "bobsvc", "*email": "bob@x.io", ":index": "0", "*path": "secret.txt",
		":id": rec.ID, ":hash": rec.DropletHash,
	}
	type want struct{ status, code int }
	expect := func(rt route, anonymous bool) (want, bool) {
		pat := strings.Join(rt.pattern, "/")
		switch {
		case rt.access == accessBulk:
			return want{401, 200}, true
		case rt.access == accessNone && strings.HasPrefix(pat, "staged_droplets"):
			return want{403, 200}, true
		case anonymous && (rt.access == accessUser || rt.access == accessAdmin):
			return want{403, 200}, true
		case rt.access == accessAdmin:
			return want{403, 200}, true
		case strings.Contains(pat, ":name"):
			return want{404, 301}, true
		case strings.Contains(pat, ":alias"):
			return want{404, 500}, true
		case strings.Contains(pat, "*email"):
			return want{403, 200}, true
		}
		return want{}, false // a route on the caller's own resources
	}
	bodies := map[string]string{"POST /users/*email/tokens": `{"password":"guess"}`}
	for _, who := range []struct {
		name  string
		token string
	}{{"alice", alice.Token()}, {"anonymous", ""}} {
		for _, rt := range e.c.routes {
			segs := make([]string, len(rt.pattern))
			for i, s := range rt.pattern {
				if v, ok := fill[s]; ok {
					segs[i] = v
				} else {
					segs[i] = s
				}
			}
			path := "/" + strings.Join(segs, "/")
			t.Run(who.name+" "+rt.name, func(t *testing.T) {
				body := bodies[rt.method+" /"+strings.Join(rt.pattern, "/")]
				if body == "" && (rt.method == "POST" || rt.method == "PUT") {
					body = `{}`
				}
				status, resp, _ := e.raw(rt.method, path, who.token, body, nil)
				for _, secret := range []string{"bobapp", "bobsvc", "bob's secret", rec.ID} {
					if strings.Contains(resp, secret) && !(rt.method == "GET" && path == "/info") {
						t.Fatalf("%s %s revealed %q: %d %s", rt.method, path, secret, status, resp)
					}
				}
				w, ok := expect(rt, who.token == "")
				if !ok {
					if status >= 500 && status != 501 {
						t.Fatalf("%s %s = %d %s", rt.method, path, status, resp)
					}
					return
				}
				var got struct {
					Code int `json:"code"`
				}
				_ = json.Unmarshal([]byte(resp), &got)
				if status != w.status || got.Code != w.code {
					t.Fatalf("%s %s = %d %s, want %d/%d", rt.method, path, status, resp, w.status, w.code)
				}
			})
		}
	}
	// Bob's records are untouched.
	after, err := bob.App(ctx, "bobapp")
	if err != nil || after.Meta.Version != before.Meta.Version || after.State != "STARTED" {
		t.Fatalf("bob's app changed: %+v -> %+v (%v)", before, after, err)
	}
	if _, err := bob.Service(ctx, "bobsvc"); err != nil {
		t.Fatalf("bob's service: %v", err)
	}
	if _, err := e.client().Login(ctx, "bob@x.io", "pw-bob@x.io"); err != nil {
		t.Fatalf("bob's password changed: %v", err)
	}
}
