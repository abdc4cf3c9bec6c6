package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		mod  func(*options)
	}{
		{name: "defaults"},
		{name: "flags", args: []string{"--data-dir", "/d", "--router-addr", ":0", "--no-sample"},
			mod: func(o *options) { o.dataDir, o.routerAddr, o.noSample = "/d", ":0", true }},
		{name: "env", env: map[string]string{"KILN_DATA_DIR": "/e", "KILN_NO_SAMPLE": "true", "KILN_ADMIN_PASSWORD": "pw", "KILN_MEMORY_MB": "512"},
			mod: func(o *options) { o.dataDir, o.noSample, o.adminPassword, o.memoryMB = "/e", true, "pw", 512 }},
		{name: "flag beats env", args: []string{"--domain", "flag.test"}, env: map[string]string{"KILN_DOMAIN": "env.test"},
			mod: func(o *options) { o.domain = "flag.test" }},
	}
	want0, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := parseFlags(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			want := want0
			if tt.mod != nil {
				tt.mod(&want)
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(options{})); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	if _, err := parseFlags([]string{"extra"}); err == nil {
		t.Error("stray argument accepted")
	}
	t.Setenv("KILN_MEMORY_MB", "lots")
	if _, err := parseFlags(nil); err == nil {
		t.Error("bad KILN_MEMORY_MB accepted")
	}
}
