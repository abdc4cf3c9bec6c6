package dea

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/warden/fake"
)

type blobFetcher map[string][]byte

func (f blobFetcher) Fetch(_ context.Context, uri string) (io.ReadCloser, error) {
	b, ok := f[uri]
	if !ok {
		return nil, fmt.Errorf("no %s", uri)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func sum(b []byte) string { h := sha1.Sum(b); return hex.EncodeToString(h[:]) }

func TestDropletCacheLRU(t *testing.T) {
	t.Parallel()
	blobs := blobFetcher{}
	shas := make([]string, 4)
	for i := range shas {
		b := bytes.Repeat([]byte{byte('a' + i)}, 100)
		shas[i] = sum(b)
		blobs[shas[i]] = b
	}
	dir := t.TempDir()
	c, err := newDropletCache(dir, 250, 1000, blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(sha string) {
		t.Helper()
		f, err := c.open(context.Background(), sha, sha)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	get(shas[0])
	get(shas[1])
	get(shas[0]) // 0 is now the most recent
	get(shas[2]) // evicts 1
	if _, n := c.size(); n != 2 {
		t.Fatalf("%d droplets cached, want 2", n)
	}
	c.mu.Lock()
	_, has0 := c.entries[shas[0]]
	_, has1 := c.entries[shas[1]]
	c.mu.Unlock()
	if !has0 || has1 {
		t.Errorf("after eviction: has0 %v has1 %v", has0, has1)
	}
	// A new cache on the same directory finds what is there.
	c2, err := newDropletCache(dir, 250, 1000, blobs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if total, n := c2.size(); n != 2 || total != 200 {
		t.Errorf("reloaded %d droplets, %d bytes", n, total)
	}
	// Bad hashes, sizes and names are refused.
	if _, err := c.open(context.Background(), shas[3], shas[2]); !errors.Is(err, ErrSHA1Mismatch) {
		t.Errorf("mismatch: %v", err)
	}
	small, _ := newDropletCache(t.TempDir(), 250, 50, blobs, nil)
	if _, err := small.open(context.Background(), shas[3], shas[3]); !errors.Is(err, ErrDropletTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if _, err := c.open(context.Background(), "../x", "y"); err == nil {
		t.Error("a path as sha1 was accepted")
	}
}

func TestLogWriterSplitsLines(t *testing.T) {
	t.Parallel()
	b := membus.New()
	t.Cleanup(func() { _ = b.Close() })
	d := newTestDEA(t, b)
	d.cfg.MaxLogLine = 8
	got := make(chan string, 16)
	if _, err := b.Subscribe("logs.app", func(m *bus.Msg) {
		var l protocol.LogLine
		_ = json.Unmarshal(m.Data, &l)
		got <- l.Stream + ":" + l.Line
	}); err != nil {
		t.Fatal(err)
	}
	inst := &instance{id: "i", app: "app"}
	w := &logWriter{d: d, inst: inst, stream: "stdout", lim: newLogLimiter(1000, 1000)}
	for _, chunk := range []string{"hel", "lo\r\nwor", "ld\n", "0123456789abc\n", "tail"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"stdout:hello", "stdout:world", "stdout:01234567", "stdout:89abc"}
	var lines []string
	for range want {
		select {
		case l := <-got:
			lines = append(lines, l)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v", lines)
		}
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	l := newLogLimiter(10, 2)
	t0 := time.Unix(0, 0)
	steps := []struct {
		at      time.Duration
		ok      bool
		dropped int64
	}{
		{0, true, 0}, {0, true, 0}, {0, false, 0}, {0, false, 0},
		{100 * time.Millisecond, true, 2}, // one token back after 0.1 s
		{100 * time.Millisecond, false, 0},
		{time.Hour, true, 1}, {time.Hour, true, 0}, {time.Hour, false, 0}, // burst caps
	}
	for i, s := range steps {
		ok, dropped := l.allow(t0.Add(s.at))
		if ok != s.ok || dropped != s.dropped {
			t.Errorf("step %d: allow = %v, %d; want %v, %d", i, ok, dropped, s.ok, s.dropped)
		}
	}
}

func TestAppEnv(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &protocol.Start{
		Droplet: "app-id", Index: 3, Name: "blog", URIs: []string{"blog.example.com"}, Version: "abc-1",
		Env: []string{"A=1", "bad", "PORT=9"},
		Services: []protocol.ServiceBinding{
			{Name: "db", Label: "postgres", Plan: "free", Credentials: map[string]any{"u": "x"}},
			{Name: "db2", Label: "postgres"},
			{Name: "mine"},
		},
	}
	env, err := appEnv(s, "inst", 8080, protocol.Limits{Mem: 256, Disk: 512, FDs: 100}, started)
	if err != nil {
		t.Fatal(err)
	}
	get := func(k string) string {
		v := ""
		for _, kv := range env {
			if strings.HasPrefix(kv, k+"=") {
				v = kv[len(k)+1:] // the last one wins, as warden.MergeEnv does
			}
		}
		return v
	}
	var app vcapApplication
	if err := json.Unmarshal([]byte(get("VCAP_APPLICATION")), &app); err != nil {
		t.Fatal(err)
	}
	want := vcapApplication{
		InstanceID: "inst", InstanceIndex: 3, Name: "blog", ApplicationName: "blog",
		URIs: []string{"blog.example.com"}, ApplicationURIs: []string{"blog.example.com"},
		ApplicationID: "app-id", Version: "abc-1", ApplicationVersion: "abc-1", Host: "0.0.0.0", Port: 8080,
		Limits: vcapLimits{Mem: 256, Disk: 512, FDs: 100}, SpaceName: "default", OrganizationName: "default",
		Start: "2026-01-02 03:04:05 +0000", StartedAt: "2026-01-02 03:04:05 +0000",
		StartedAtTimestamp: started.Unix(), StateTimestamp: started.Unix(),
	}
	if diff := cmp.Diff(want, app); diff != "" {
		t.Errorf("VCAP_APPLICATION (-want +got):\n%s", diff)
	}
	var svcs map[string][]vcapService
	if err := json.Unmarshal([]byte(get("VCAP_SERVICES")), &svcs); err != nil {
		t.Fatal(err)
	}
	if len(svcs["postgres"]) != 2 || len(svcs["user-provided"]) != 1 || svcs["postgres"][1].Tags == nil {
		t.Errorf("VCAP_SERVICES = %+v", svcs)
	}
	for k, v := range map[string]string{"VCAP_APP_PORT": "8080", "VCAP_APP_HOST": "0.0.0.0", "A": "1", "PORT": "9", "INSTANCE_INDEX": "3", "MEMORY_LIMIT": "256m"} {
		if got := get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestFileURLSignature(t *testing.T) {
	t.Parallel()
	d := &DEA{cfg: Config{FileServerURL: "http://h:1/", FileURLTTL: time.Minute}, key: []byte("k")}
	now := time.Unix(1000, 0)
	u := d.fileURL("inst", now)
	parts := strings.Split(strings.TrimPrefix(u, "http://h:1/files/"), "/")
	if len(parts) != 4 || parts[0] != "inst" || parts[1] != "1060" {
		t.Fatalf("url %q", u)
	}
	tests := []struct {
		name         string
		id, exp, sig string
		at           time.Time
		ok           bool
	}{
		{"valid", "inst", parts[1], parts[2], now, true},
		{"expired", "inst", parts[1], parts[2], now.Add(2 * time.Minute), false},
		{"other instance", "other", parts[1], parts[2], now, false},
		{"extended expiry", "inst", "9999999999", parts[2], now, false},
		{"garbage", "inst", "x", "y", now, false},
	}
	for _, tt := range tests {
		err := d.checkSignature(tt.id, tt.exp, tt.sig, tt.at)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// newTestDEA returns a DEA on b and warden/fake that is not running: its
// handlers can be called directly, and it spawns no goroutines.
func newTestDEA(t testing.TB, b bus.Bus) *DEA {
	t.Helper()
	backend, err := fake.New(fake.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	cfg := DefaultConfig()
	cfg.BaseDir = t.TempDir()
	d, err := New(cfg, Deps{Bus: b, Backend: backend, Fetcher: blobFetcher{}})
	if err != nil {
		t.Fatal(err)
	}
	d.closing = true // no background work: goTask refuses
	return d
}

var fuzzSeeds = []string{
	`{"droplet":"a","limits":{"mem":128},"index":0}`,
	`{"droplet":"a","index":1,"sha1":"0123456789012345678901234567890123456789","executableUri":"http://x/y","version":"v","limits":{"mem":64}}`,
	`{"droplet":"a","instances":["x"],"indices":[0],"states":["RUNNING"],"include_stats":true}`,
	`{"droplet":"a","uris":["a.b","c.d/path"]}`,
	`{"id":"peer","available_memory":10,"max_memory":100,"app_id_to_count":{"a":1}}`,
	`{"id":"r","minimumRegisterIntervalInSeconds":5}`,
	`{"droplet":12,"index":-1}`, `null`, `[]`, `{`, ``,
}

// FuzzHandlers feeds random payloads to every subject handler of a DEA:
// none may panic.
func FuzzHandlers(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	b := membus.New()
	f.Cleanup(func() { _ = b.Close() })
	d := newTestDEA(f, b)
	handlers := d.handlers()
	var mu sync.Mutex
	f.Fuzz(func(t *testing.T, payload string) {
		mu.Lock()
		defer mu.Unlock()
		for subject, h := range handlers {
			_ = h(&bus.Msg{Subject: subject, Reply: "_INBOX.fuzz", Data: []byte(payload)})
		}
	})
}
