package router

import (
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/router/table"
)

// FuzzRegisterMessage feeds arbitrary router.register payloads: a message
// either changes the table or is counted as bad, never both, never a panic.
func FuzzRegisterMessage(f *testing.F) {
	f.Add([]byte(`{"host":"10.0.0.1","port":8080,"uris":["a.example.com","*.b.example.com/x"],"app":"x","private_instance_index":"2"}`))
	f.Add([]byte(`{"host":"10.0.0.1","port":8080,"uris":["a.example.com"],"app":12}`))
	f.Add([]byte(`{"host":"","port":-1}`))
	f.Add([]byte(`[]`))
	r, err := New(DefaultConfig(), Deps{Bus: membus.New()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bad := r.metrics.badRegistrations.Load()
		regs := r.metrics.registrations.Load() + r.metrics.refreshes.Load()
		r.onRegister(&bus.Msg{Subject: "router.register", Data: data})
		dBad := r.metrics.badRegistrations.Load() - bad
		dRegs := r.metrics.registrations.Load() + r.metrics.refreshes.Load() - regs
		if dBad+min(dRegs, 1) != 1 {
			t.Fatalf("bad +%d, registrations +%d", dBad, dRegs)
		}
	})
}

// FuzzInstanceAndCookie feeds arbitrary X-CF-App-Instance values and
// Set-Cookie lines.
func FuzzInstanceAndCookie(f *testing.F) {
	f.Add("app:1", "JSESSIONID=abc; Path=/x; HttpOnly")
	f.Add(":", "jsessionid=")
	f.Add("a:-1", "other=1")
	r, err := New(DefaultConfig(), Deps{Bus: membus.New()})
	if err != nil {
		f.Fatal(err)
	}
	r.table.Upsert("a.com", table.EndpointInfo{Addr: "h:1", AppID: "app", PrivateInstanceID: "i", Index: 1}, r.clock.Now())
	pool := r.table.Lookup("a.com", "/")
	f.Fuzz(func(t *testing.T, instance, setCookie string) {
		ep, fail := r.choose(pool, instance, "", 0, nil)
		if (ep == nil) == (fail == nil) {
			t.Fatalf("choose(%q) = %v, %v", instance, ep, fail)
		}
		if fail != nil && fail.status != 400 && fail.status != 404 {
			t.Fatalf("status %d", fail.status)
		}
		if v, ok := stickyCookie(setCookie, "JSESSIONID", "i"); ok && !strings.HasPrefix(v, VCAPCookie+"=i") {
			t.Fatalf("cookie %q", v)
		}
	})
}
