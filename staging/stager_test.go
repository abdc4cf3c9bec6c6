package staging_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// TestStageSampleApps stages each sample app of examples/apps with its
// built-in buildpack in warden/process containers, then runs the droplet
// the way a DEA does and expects an HTTP 200 naming the instance index and
// the bound service.
func TestStageSampleApps(t *testing.T) {
	t.Parallel()
	backend := newBackend(t)
	s := staging.New(testConfig(t, true), backend, nil)
	tests := []struct {
		app       string
		buildpack string
		start     string
		body      string
	}{
		{"go", "go", "./bin/hello", "Hello from go! instance 1, 1 service(s): mydb"},
		{"node", "nodejs", "node server.js", "Hello from node! instance 1, 1 service(s): mydb"},
		{"python", "python", "python app.py", "Hello from python! instance 1, 1 service(s): mydb"},
		{"static", "static", "./.kiln/bin/kiln-static -root '.'", "Hello from static!"},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			t.Parallel()
			var log lineRecorder
			drop, res, err := stage(t, s, staging.Request{Name: tt.app, LogWriter: &log}, sampleZip(t, tt.app))
			if err != nil {
				t.Fatalf("Stage: %v\nlog:\n%s", err, log.String())
			}
			if res.Buildpack != tt.buildpack || res.StartCommand != tt.start || res.Stack != "linux" {
				t.Errorf("result = %+v, want buildpack %q, start %q", res, tt.buildpack, tt.start)
			}
			info, err := droplet.ReadInfo(strings.NewReader(string(drop)))
			if err != nil {
				t.Fatal(err)
			}
			want := droplet.Info{DetectedBuildpack: res.DetectedBuildpack, Buildpack: tt.buildpack, StartCommand: tt.start, Stack: "linux", ProcessTypes: map[string]string{"web": tt.start}}
			if diff := cmp.Diff(want, info); diff != "" {
				t.Errorf("staging_info.json (-want +got):\n%s", diff)
			}
			if int64(len(drop)) != res.DropletSize {
				t.Errorf("DropletSize = %d, droplet is %d bytes", res.DropletSize, len(drop))
			}
			for _, w := range log.Writes() {
				if strings.Count(w, "\n") != 1 || !strings.HasSuffix(w, "\n") {
					t.Errorf("log write %q is not one line", w)
				}
			}
			body := runDroplet(t, backend, drop)
			if !strings.Contains(body, tt.body) {
				t.Errorf("body = %q, want it to contain %q", body, tt.body)
			}
		})
	}
}
