package natsbus

import "testing"

// RunTestServer starts an embedded server for a test with
// DefaultServerConfig (127.0.0.1, a random port, no auth) and shuts it down
// when the test ends. It fails the test if the server does not start.
//
//	srv := natsbus.RunTestServer(t)
//	cfg := natsbus.DefaultConfig()
//	cfg.URLs = []string{srv.ClientURL()}
func RunTestServer(t testing.TB) *Server {
	t.Helper()
	s, err := RunServer(DefaultServerConfig())
	if err != nil {
		t.Fatalf("natsbus: run test server: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}
