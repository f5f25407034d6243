package sdkload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spike-rs/spike-rs/tests/interop/go/internal/procs"
)

const (
	// TrustDomain is the trust domain of every identity the dev agent issues.
	TrustDomain = "spike.ist"
	// NexusID is Nexus's SPIFFE ID.
	NexusID = "spiffe://spike.ist/spike/nexus"

	startTimeout = 60 * time.Second
)

// System is a spike-dev-agent and a spike-nexus started from one directory of binaries with
// default settings (Nexus: memory backend, a free loopback port, nothing else set).
type System struct {
	binDir   string
	Dir      string // scratch directory: sockets, data, logs
	sockDir  string
	NexusURL string // https://127.0.0.1:<port>
	agent    *procs.Proc
	nexus    *procs.Proc
	nexusN   int
}

// Start starts spike-dev-agent and spike-nexus from binDir. Stop it when done.
func Start(binDir string) (*System, error) {
	for _, n := range []string{"spike-dev-agent", "spike-nexus"} {
		if _, err := os.Stat(filepath.Join(binDir, n)); err != nil {
			return nil, fmt.Errorf("%s: build it first (cargo build --release -p "+
				"spike-dev-agent -p spike-nexus): %w", n, err)
		}
	}
	dir, err := os.MkdirTemp("", "spike-sdkload-") // short: socket paths are limited
	if err != nil {
		return nil, err
	}
	s := &System{binDir: binDir, Dir: dir, sockDir: filepath.Join(dir, "sock")}
	s.agent, err = s.spawn("agent", "spike-dev-agent", nil, "--socket-dir", s.sockDir)
	if err != nil {
		return s, err
	}
	err = procs.WaitFor("the dev agent's sockets", 20*time.Second, func() error {
		for _, n := range []string{"nexus", "pilot-superuser"} {
			if _, err := os.Stat(filepath.Join(s.sockDir, n+".sock")); err != nil {
				return err
			}
		}
		return nil
	}, s.agent)
	if err != nil {
		return s, err
	}
	return s, s.NewNexus()
}

// Socket is the SPIFFE_ENDPOINT_SOCKET value of one dev-agent entry (e.g. "pilot-superuser").
func (s *System) Socket(name string) string {
	return "unix://" + filepath.Join(s.sockDir, name+".sock")
}

// NewNexus stops the running Nexus (if any) and starts a fresh one (empty memory store, full
// rate-limit buckets, no connections) on a new port; NexusURL changes.
func (s *System) NewNexus() error {
	s.nexus.Kill()
	s.nexus = nil
	s.nexusN++
	addr, err := procs.FreePort()
	if err != nil {
		return err
	}
	data := filepath.Join(s.Dir, fmt.Sprintf("data-%d", s.nexusN))
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	env := []string{
		"SPIFFE_ENDPOINT_SOCKET=" + s.Socket("nexus"),
		"SPIKE_NEXUS_BACKEND_STORE=memory",
		"SPIKE_NEXUS_TLS_PORT=" + addr,
		"SPIKE_NEXUS_DATA_DIR=" + data,
	}
	// Deliberate overrides only (e.g. to compare a setting): SPIKE_INTEROP_NEXUS_ENV holds
	// comma-separated KEY=VALUE pairs.
	if extra := os.Getenv("SPIKE_INTEROP_NEXUS_ENV"); extra != "" {
		env = append(env, strings.Split(extra, ",")...)
	}
	s.nexus, err = s.spawn(fmt.Sprintf("nexus-%d", s.nexusN), "spike-nexus", env)
	if err != nil {
		return err
	}
	s.NexusURL = "https://" + addr
	return procs.WaitForMTLS(context.Background(), s.Socket("pilot-superuser"), addr, NexusID,
		startTimeout, s.nexus)
}

// Stop kills both processes and removes the scratch directory unless keep is set.
func (s *System) Stop(keep bool) {
	s.nexus.Kill()
	s.agent.Kill()
	if keep {
		fmt.Fprintf(os.Stderr, "sdkload: kept %s\n", s.Dir)
		return
	}
	_ = os.RemoveAll(s.Dir)
}

// LogTail is the last n lines of the current Nexus's and the agent's logs.
func (s *System) LogTail(n int) string {
	var b strings.Builder
	for _, p := range []*procs.Proc{s.agent, s.nexus} {
		if p == nil {
			continue
		}
		if tail := procs.Tail(p.Log(), n); tail != "" {
			fmt.Fprintf(&b, "---- last lines of %s ----\n%s\n", filepath.Base(p.Log()), tail)
		}
	}
	return b.String()
}

// ChildEnv is the environment for a child: this process's, minus every SPIKE_* and SPIFFE_*
// variable (a developer's shell must not change Nexus's settings, e.g. lift its rate limit),
// plus the trust domain and extra.
func ChildEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SPIKE_") || strings.HasPrefix(kv, "SPIFFE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "SPIKE_TRUST_ROOT="+TrustDomain)
	return append(env, extra...)
}

// spawn starts binDir/bin as the child name (log: Dir/name.log) with ChildEnv(env...).
func (s *System) spawn(name, bin string, env []string, args ...string) (*procs.Proc, error) {
	return procs.Start(s.Dir, filepath.Join(s.Dir, name+".log"), filepath.Join(s.binDir, bin),
		ChildEnv(env...), args...)
}
