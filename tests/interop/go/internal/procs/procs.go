// Package procs starts the child processes of the interop suite and of cmd/sdkload
// (spike-dev-agent, spike-nexus), and waits, always within a bound, for them to be ready.
package procs

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

// Proc is a running (or exited) child process whose stdout and stderr go to a log file.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the child has exited and been reaped
	log  string
}

// Start starts bin with args in dir, with exactly the environment env (callers decide what
// to inherit), stdout and stderr written to a new file at logPath. On Linux the kernel kills
// the child if this process dies first (Pdeathsig), so an aborted run never leaves one
// behind.
func Start(dir, logPath, bin string, env []string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the child has exited (and been reaped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill stops the child (SIGKILL) and waits up to 5 s for it to be reaped. A nil p is a
// no-op.
func (p *Proc) Kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Log is the path of the child's log file.
func (p *Proc) Log() string { return p.log }

// State is the child's exit state once it has exited, else nil.
func (p *Proc) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.cmd.ProcessState
}

// FreePort is a loopback address (127.0.0.1:<port>) with a port that was free just now.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitFor polls check every 100 ms until it succeeds, p exits (p may be nil), or the timeout
// passes. The error names what was awaited and, if p exited, its binary and exit state; the
// last error of check is joined to it.
func WaitFor(what string, timeout time.Duration, check func() error, p *Proc) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = check(); last == nil {
			return nil
		}
		if p != nil && p.Exited() {
			return errors.Join(fmt.Errorf("waiting for %s: %s exited (%s)", what,
				filepath.Base(p.cmd.Path), p.State()), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(fmt.Errorf("waiting for %s: gave up after %s", what, timeout), last)
}

// WaitForMTLS waits, within timeout, until an mTLS handshake with the server at addr
// succeeds as the identity that the Workload API at socket (a SPIFFE_ENDPOINT_SOCKET value)
// issues, the server authorised by its SPIFFE ID serverID; each dial is bounded by 2 s, and
// p (the server, may be nil) exiting aborts the wait.
func WaitForMTLS(ctx context.Context, socket, addr, serverID string, timeout time.Duration,
	p *Proc) error {
	id, err := spiffeid.FromString(serverID)
	if err != nil {
		return fmt.Errorf("server SPIFFE ID %q: %w", serverID, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return fmt.Errorf("X509Source for %s: %w", socket, err)
	}
	defer src.Close()
	conf := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(id))
	what := fmt.Sprintf("%s to accept mTLS on %s", serverID, addr)
	return WaitFor(what, timeout, func() error {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: conf}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}, p)
}

// Tail is the last n lines of the file at path (without a final newline), or "" if it
// cannot be read.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
