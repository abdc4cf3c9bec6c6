package kerneltest_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/kerneltest"
)

// A user's test pushes an app to a kernel of its own and checks that the
// router serves it. Start ties the kernel to the test; the Example uses New
// and Close, since Examples get no *testing.T.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, err := kerneltest.New(ctx, kerneltest.WithProcesses())
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()

	if err := k.Push(ctx, "hello", "../examples/apps/static", 1); err != nil {
		log.Fatal(err)
	}
	status, body, err := k.Get(k.AppHost("hello"), "/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(status, strings.Contains(body, "Hello from static!"))
	// Output: 200 true
}

// TestStart shows the one-line form a test uses.
func TestStart(t *testing.T) {
	k := kerneltest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Push(ctx, "hello", "testdata/hello", 2); err != nil {
		t.Fatal(err)
	}
	status, body, err := k.Get(k.AppHost("hello"), "/")
	if err != nil || status != 200 || !strings.Contains(body, `"handle"`) {
		t.Fatalf("get = %d %q %v, want 200 from a fake instance", status, body, err)
	}
	status, _, err = k.Get(k.AppHost("nothing"), "/")
	if err != nil || status != 404 {
		t.Fatalf("unknown host = %d %v, want 404", status, err)
	}
}
