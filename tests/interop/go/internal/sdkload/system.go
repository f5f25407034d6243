package sdkload

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
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
	agent    *proc
	nexus    *proc
	nexusN   int
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
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
	err = waitFor("the dev agent's sockets", 20*time.Second, func() error {
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
	s.nexus.kill()
	s.nexus = nil
	s.nexusN++
	addr, err := freePort()
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
	return waitForNexus(s.Socket("pilot-superuser"), addr, s.nexus)
}

// waitForNexus waits until an mTLS handshake with Nexus at addr succeeds, as the identity
// of socket, Nexus authorised by its SPIFFE ID; p exiting aborts the wait.
func waitForNexus(socket, addr string, p *proc) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return fmt.Errorf("X509Source for %s: %w", socket, err)
	}
	defer src.Close()
	conf := tlsconfig.MTLSClientConfig(src, src,
		tlsconfig.AuthorizeID(spiffeid.RequireFromString(NexusID)))
	return waitFor("Nexus to accept mTLS on "+addr, startTimeout, func() error {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: conf}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}, p)
}

// Stop kills both processes and removes the scratch directory unless keep is set.
func (s *System) Stop(keep bool) {
	s.nexus.kill()
	s.agent.kill()
	if keep {
		fmt.Fprintf(os.Stderr, "sdkload: kept %s\n", s.Dir)
		return
	}
	_ = os.RemoveAll(s.Dir)
}

// LogTail is the last n lines of the current Nexus's and the agent's logs.
func (s *System) LogTail(n int) string {
	var b strings.Builder
	for _, p := range []*proc{s.agent, s.nexus} {
		if p == nil {
			continue
		}
		data, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "---- last lines of %s ----\n%s\n", filepath.Base(p.log),
			strings.Join(lines, "\n"))
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

func (s *System) spawn(name, bin string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(s.Dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(s.binDir, bin), args...)
	cmd.Dir = s.Dir
	cmd.Env = ChildEnv(env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitFor polls check until it succeeds, p exits, or the timeout passes.
func waitFor(what string, timeout time.Duration, check func() error, p *proc) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = check(); last == nil {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("waiting for %s: the process exited", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(fmt.Errorf("waiting for %s: gave up after %s", what, timeout), last)
}
