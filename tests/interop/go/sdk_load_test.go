package interop

// Issue 13: SPIKE's Go SDK, used exactly as its guide shows, must be able to read a secret
// thousands of times from many goroutines against a Nexus with default settings, with no
// errors and no 429s.
//
// This is the SDK's own behaviour under load, not a tuned client: api.GetSecret builds a new
// http.Client per call (net.PostAndUnmarshal → net.CreateMTLSClientForNexus), so every call
// is a new TCP connection and a full mTLS handshake, and each leaves its connection idle for
// the SDK's IdleConnTimeout (30 s) in a Transport nobody can close. A Nexus must keep up with
// that: at 16 goroutines the idle connections number in the thousands, and every call
// counts against the caller's rate limit.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spike-rs/spike-rs/tests/interop/go/internal/sdkload"
)

const (
	loadCalls   = 5000
	loadWorkers = 16
	// loadDeadline bounds the whole run; a Nexus that stalls fails here instead of hanging.
	loadDeadline = 90 * time.Second
)

func TestSDKGetSecretUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	// A Nexus of its own, with default settings (TestMain's environment drops any SPIKE_*
	// from the shell, and nothing here sets a limit): its rate-limit buckets start full, and
	// the thousands of connections the SDK leaves open do not linger on the shared Nexus
	// while the other tests run.
	url := extraNexus(t, "nexus-load")
	// The SDK reads the Nexus URL from the environment on every call; t.Setenv restores it.
	t.Setenv("SPIKE_NEXUS_API_URL", url)

	// As the SDK's guide shows: one api.New() for the program (shared by every goroutine),
	// PutSecret, then GetSecret per read.
	api := superuser(t)
	const path = "tenants/load/db/creds"
	want := map[string]string{"username": "load", "password": "p-<&>-\u00e9"}
	mustOK(t, "PutSecret", api.PutSecret(ctx(t), path, want))

	run, cancel := context.WithTimeout(context.Background(), loadDeadline)
	defer cancel()
	start := time.Now()
	r := sdkload.Measure(run, sdkload.ModePerCall, sdkload.Options{
		Workers: loadWorkers, Calls: loadCalls, CallTimeout: callTimeout,
	}, sdkload.PerCall(api, path, want), source(t, "pilot-superuser"), url, 5*time.Second)
	t.Log(r.String())

	var problems []string
	if r.Calls != loadCalls {
		problems = append(problems, fmt.Sprintf(
			"only %d of %d calls finished in %s (%d cut off at the %s deadline)",
			r.Calls, loadCalls, time.Since(start).Round(time.Second), r.Unfinished,
			loadDeadline))
	}
	if r.Errors != 0 {
		problems = append(problems, fmt.Sprintf(
			"%d calls failed (%d of them `[net_peer_connection] unexpected status code from "+
				"peer`, how the SDK reports a 429), want 0:\n%s",
			r.Errors, r.TooMany, r.ErrorSummary(5)))
	}
	if r.NexusRateLimited > 0 {
		problems = append(problems, fmt.Sprintf(
			"Nexus answered 429 (rate limited) %d times, want 0", r.NexusRateLimited))
	}
	if r.OK != loadCalls {
		problems = append(problems, fmt.Sprintf("%d of %d calls read the right value",
			r.OK, loadCalls))
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("%d SDK GetSecret calls from %d goroutines against a Nexus with default "+
			"settings: %s", loadCalls, loadWorkers, r.String())
	}
}
