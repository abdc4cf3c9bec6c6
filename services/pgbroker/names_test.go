package pgbroker

import (
	"regexp"
	"strings"
	"testing"
)

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func TestObjectName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, wantPrefix string
	}{
		{"3f2a9c1e-0b6d-4e8f-a1c2-7d9e0f1a2b3c", "kiln_db_3f2a9c1e_0b6d_4e8f_a1c2_"},
		{"Hello World", "kiln_db_hello_world_"},
		{`x"; DROP DATABASE postgres; --`, "kiln_db_x___drop_database_postgr_"},
		{"ünïcödé", "kiln_db__n_c_d_"},
	}
	for _, tt := range tests {
		got := objectName("kiln", "db", tt.id)
		if !strings.HasPrefix(got, tt.wantPrefix) || !identRE.MatchString(got) || len(got) > maxIdentLen {
			t.Errorf("objectName(%q) = %q, want prefix %q, a plain identifier of <= %d bytes", tt.id, got, tt.wantPrefix, maxIdentLen)
		}
	}
	// Ids that slug alike still get distinct names.
	seen := map[string]string{}
	for _, id := range []string{"a-b", "a_b", "A-B", "a b", strings.Repeat("x", 40), strings.Repeat("x", 41)} {
		n := objectName("kiln", "db", id)
		if prev, dup := seen[n]; dup {
			t.Errorf("ids %q and %q share name %q", prev, id, n)
		}
		seen[n] = id
	}
	if objectName("kiln", "db", "i") == objectName("kiln", "own", "i") {
		t.Error("database and owner role share a name")
	}
}

func FuzzObjectName(f *testing.F) {
	f.Add("3f2a9c1e-0b6d-4e8f-a1c2-7d9e0f1a2b3c")
	f.Add(`"'\` + "\x00")
	f.Add(strings.Repeat("é", 100))
	f.Fuzz(func(t *testing.T, id string) {
		for _, kind := range []string{"db", "own", "bind"} {
			n := objectName("abcdefghijklmnop", kind, id)
			if !identRE.MatchString(n) || len(n) > maxIdentLen {
				t.Fatalf("objectName(%q) = %q (%d bytes)", id, n, len(n))
			}
			if n != objectName("abcdefghijklmnop", kind, id) {
				t.Fatal("not deterministic")
			}
		}
	})
}

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"plain", `'plain'`},
		{"it's", `'it''s'`},
		{`back\slash`, `E'back\\slash'`},
		{`both'\`, `E'both''\\'`},
		{"", `''`},
	}
	for _, tt := range tests {
		if got := quoteLiteral(tt.in); got != tt.want {
			t.Errorf("quoteLiteral(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	good := "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable"
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{AdminURL: good}, true},
		{"key=value", Config{AdminURL: "host=127.0.0.1 user=postgres sslmode=disable"}, true},
		{"no url", Config{}, false},
		{"bad url", Config{AdminURL: "postgres://u:p@[::1"}, false},
		{"upper prefix", Config{AdminURL: good, NamePrefix: "Kiln"}, false},
		{"long prefix", Config{AdminURL: good, NamePrefix: strings.Repeat("k", 17)}, false},
		{"digit prefix", Config{AdminURL: good, NamePrefix: "1k"}, false},
		{"port", Config{AdminURL: good, Port: 70000}, false},
		{"max conns", Config{AdminURL: good, MaxConns: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCredentialsShape(t *testing.T) {
	t.Parallel()
	b, err := New(Config{AdminURL: "postgres://admin:pw@db.internal:6543/postgres?sslmode=require", PasswordKey: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pw := b.password("i", "b")
	if pw != b.password("i", "b") || pw == b.password("i", "c") || len(pw) != 43 {
		t.Errorf("password %q is not a stable 43-character HMAC", pw)
	}
	c := b.credentials("kiln_db_x", "kiln_bind_y", "p@ss/word")
	want := "postgres://kiln_bind_y:p%40ss%2Fword@db.internal:6543/kiln_db_x?sslmode=require"
	if c["uri"] != want || c["host"] != "db.internal" || c["port"] != 6543 || c["name"] != "kiln_db_x" {
		t.Errorf("credentials = %v, want uri %s", c, want)
	}
}
