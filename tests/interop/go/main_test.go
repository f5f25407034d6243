// Package interop proves the drop-in claim with clients nobody on the spike-rs team wrote:
// SPIKE's own Go SDK (github.com/spiffe/spike-sdk-go, unmodified) and go-spiffe talk to
// spike-rs's `spike-dev-agent` (SPIFFE Workload API) and `spike-nexus` (SPIKE v1 REST).
//
// TestMain starts both binaries from target/debug (build them first:
// `cargo build -p spike-dev-agent -p spike-nexus`; SPIKE_INTEROP_BIN_DIR names another
// directory, e.g. target/release), runs the tests against them and stops them. Every wait is
// bounded.
package interop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	sdkErrors "github.com/spiffe/spike-sdk-go/errors"

	"github.com/spike-rs/spike-rs/tests/interop/go/internal/procs"
)

const (
	trustDomain = "spike.ist"
	nexusID     = "spiffe://spike.ist/spike/nexus"
	superuserID = "spiffe://spike.ist/spike/pilot/role/superuser"
	liteID      = "spiffe://spike.ist/spike/workload/role/lite"
	// demoID is a plain workload: it may do only what a policy grants it.
	demoID = "spiffe://spike.ist/workload/demo"
	// jwtAppID is a plain workload that calls Nexus with JWT-SVIDs (jwt_test.go).
	jwtAppID = "spiffe://spike.ist/workload/jwt-app"

	// svidTTL is short so that the rotation test sees a new SVID within seconds (the agent
	// re-issues at half the TTL); every other test runs across rotations too.
	svidTTL = 6 * time.Second

	startTimeout = 60 * time.Second
	callTimeout  = 20 * time.Second
)

// sys is the running system, set by TestMain.
var sys *system

type system struct {
	root     string // repository root
	dir      string // scratch directory: sockets, data, logs
	sockDir  string
	nexusURL string // https://127.0.0.1:<port>
	addr     string // 127.0.0.1:<port>
	jwtURL   string // https://127.0.0.1:<port> of Nexus's JWT-SVID listener
	jwtAddr  string // 127.0.0.1:<port> of Nexus's JWT-SVID listener
	agent    *procs.Proc
	nexus    *procs.Proc
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	s, err := startSystem()
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop: cannot start the system: %v\n", err)
		if s != nil {
			s.dumpLogs()
			s.stop()
		}
		return 1
	}
	sys = s
	code := m.Run()
	if code != 0 {
		s.dumpLogs()
	}
	s.stop()
	return code
}

// socket is the SPIFFE_ENDPOINT_SOCKET value of one dev-agent entry.
func (s *system) socket(name string) string {
	return "unix://" + filepath.Join(s.sockDir, name+".sock")
}

func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root := filepath.Clean(filepath.Join(wd, "..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "Cargo.toml")); err != nil {
		return "", fmt.Errorf("repository root not found at %s: %w", root, err)
	}
	return root, nil
}

// binary is the path of a spike-rs binary: in $SPIKE_INTEROP_BIN_DIR when set (e.g.
// target/release), else in $CARGO_TARGET_DIR/debug (default target/debug).
func binary(root, name string) (string, error) {
	dir := os.Getenv("SPIKE_INTEROP_BIN_DIR")
	if dir == "" {
		dir = os.Getenv("CARGO_TARGET_DIR")
		if dir == "" {
			dir = filepath.Join(root, "target")
		}
		dir = filepath.Join(dir, "debug")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf(
			"%s not found: run cargo build -p spike-dev-agent -p spike-nexus first", p)
	}
	return p, nil
}

// hermeticEnv pins the environment both the children and the SDK read, so a developer's
// shell settings cannot leak in: every SPIKE_* and SPIFFE_* variable but this suite's own
// SPIKE_INTEROP_* is dropped (e.g. SPIKE_NEXUS_RATE_LIMIT would lift Nexus's rate limit, and
// SPIKE_HTTP_CLIENT_* would change the SDK's transport), then the few the suite needs are set.
func hermeticEnv(s *system) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if (strings.HasPrefix(k, "SPIKE_") && !strings.HasPrefix(k, "SPIKE_INTEROP_")) ||
			strings.HasPrefix(k, "SPIFFE_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("SPIKE_TRUST_ROOT", trustDomain)
	// The SDK builds every URL from this variable (config/env/url.go).
	os.Setenv("SPIKE_NEXUS_API_URL", s.nexusURL)
	// api.New() and SPIKE's Pilot read the Workload API address from here: Pilot runs as
	// the superuser. Other identities use workloadapi.WithAddr explicitly.
	os.Setenv("SPIFFE_ENDPOINT_SOCKET", s.socket("pilot-superuser"))
	os.Setenv("SPIKE_SPIFFE_SOURCE_TIMEOUT", "20s")
}

func startSystem() (*system, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	agentBin, err := binary(root, "spike-dev-agent")
	if err != nil {
		return nil, err
	}
	nexusBin, err := binary(root, "spike-nexus")
	if err != nil {
		return nil, err
	}
	// Short base path: Unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "spike-go-")
	if err != nil {
		return nil, err
	}
	addr, err := procs.FreePort()
	if err != nil {
		return nil, err
	}
	jwtAddr, err := procs.FreePort()
	if err != nil {
		return nil, err
	}
	s := &system{
		root: root, dir: dir, sockDir: filepath.Join(dir, "sock"),
		addr: addr, nexusURL: "https://" + addr,
		jwtAddr: jwtAddr, jwtURL: "https://" + jwtAddr,
	}
	hermeticEnv(s)

	s.agent, err = s.spawn("agent", agentBin, nil,
		"--socket-dir", s.sockDir,
		"--svid-ttl", svidTTL.String(),
		"--entry", "demo="+demoID,
		"--entry", "jwt-app="+jwtAppID,
	)
	if err != nil {
		return s, err
	}
	if err := procs.WaitFor("the dev agent's sockets", 20*time.Second, func() error {
		for _, n := range []string{"nexus", "pilot-superuser", "demo", "lite-workload", "jwt-app"} {
			if _, err := os.Stat(filepath.Join(s.sockDir, n+".sock")); err != nil {
				return err
			}
		}
		return nil
	}, s.agent); err != nil {
		return s, err
	}

	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return s, err
	}
	s.nexus, err = s.spawn("nexus", nexusBin, []string{
		"SPIFFE_ENDPOINT_SOCKET=" + s.socket("nexus"),
		"SPIKE_NEXUS_BACKEND_STORE=memory",
		"SPIKE_NEXUS_TLS_PORT=" + addr,
		"SPIKE_NEXUS_DATA_DIR=" + data,
		// The JWT-SVID listener (jwt_test.go); its keys come from the same Workload API.
		"SPIKE_NEXUS_JWT_TLS_PORT=" + jwtAddr,
	})
	if err != nil {
		return s, err
	}

	// Ready = an mTLS handshake as the superuser, authorising Nexus by its SPIFFE ID.
	err = procs.WaitForMTLS(context.Background(), s.socket("pilot-superuser"), addr, nexusID,
		startTimeout, s.nexus)
	return s, err
}

// extraNexus starts one more spike-nexus next to the shared one: same dev agent, its own
// data directory and free loopback port, the shared Nexus's settings (memory backend, nothing
// else) overridden by env. It returns its https:// URL and kills it at cleanup.
func extraNexus(t *testing.T, name string, env ...string) string {
	t.Helper()
	bin, err := binary(sys.root, "spike-nexus")
	if err != nil {
		t.Fatal(err)
	}
	addr, err := procs.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(sys.dir, name+"-data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	p, err := sys.spawn(name, bin, append([]string{
		"SPIFFE_ENDPOINT_SOCKET=" + sys.socket("nexus"),
		"SPIKE_NEXUS_BACKEND_STORE=memory",
		"SPIKE_NEXUS_TLS_PORT=" + addr,
		"SPIKE_NEXUS_DATA_DIR=" + data,
	}, env...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	err = procs.WaitForMTLS(context.Background(), sys.socket("pilot-superuser"), addr, nexusID,
		startTimeout, p)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return "https://" + addr
}

// spawn starts bin as the child name (log: dir/name.log) with this process's environment
// (hermeticEnv) plus env.
func (s *system) spawn(name, bin string, env []string, args ...string) (*procs.Proc, error) {
	return procs.Start(s.dir, filepath.Join(s.dir, name+".log"), bin,
		append(os.Environ(), env...), args...)
}

func (s *system) stop() {
	s.nexus.Kill()
	s.agent.Kill()
	if os.Getenv("SPIKE_INTEROP_KEEP") == "" {
		_ = os.RemoveAll(s.dir)
	} else {
		fmt.Fprintf(os.Stderr, "interop: kept %s\n", s.dir)
	}
}

// dumpLogs prints the last lines of every child's log: the agent, the shared Nexus, then
// the extra ones (extraNexus) in name order.
func (s *system) dumpLogs() {
	names := []string{"agent", "nexus"}
	extra, _ := filepath.Glob(filepath.Join(s.dir, "nexus-*.log"))
	for _, p := range extra {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".log"))
	}
	for _, n := range names {
		tail := procs.Tail(filepath.Join(s.dir, n+".log"), 60)
		if tail == "" {
			continue
		}
		fmt.Fprintf(os.Stderr, "---- last lines of %s.log ----\n%s\n", n, tail)
	}
}

// source returns a go-spiffe X509Source for the dev-agent entry `name`, closed at the end
// of the test.
func source(t *testing.T, name string) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(sys.socket(name))))
	if err != nil {
		t.Fatalf("X509Source for %s: %v", name, err)
	}
	t.Cleanup(func() { _ = src.Close() })
	return src
}

// ctx is a per-call context with a bound.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

// isCode reports whether err (an SDK error, possibly nil) carries want's error code, the way
// SPIKE's callers test it (SDKError.Is compares codes).
func isCode(err *sdkErrors.SDKError, want *sdkErrors.SDKError) bool {
	return err != nil && err.Is(want)
}
