// Command sdkload measures secret reads through SPIKE's Go SDK (spike-sdk-go, unmodified)
// against a spike-rs Nexus, in two modes:
//
//   - per-call: api.GetSecret per call, exactly as the SDK's guide shows (one api.New() for
//     the program, shared by the goroutines). The SDK makes a new http.Client per call: a new
//     connection and mTLS handshake each time, left idle for 30 s afterwards.
//   - keepalive: the same request (URL, body, Content-Type) through one client per goroutine,
//     built by the SDK's own net.CreateMTLSClientForNexus and reused.
//
// With -bin-dir it starts spike-dev-agent and spike-nexus from that directory with default
// settings (memory backend) and gives each mode a fresh Nexus; without it, it uses the
// system named by SPIKE_NEXUS_API_URL and SPIFFE_ENDPOINT_SOCKET (an identity allowed to
// write the secret it reads). It prints one line per mode, then one JSON line.
//
//	cargo build --release -p spike-dev-agent -p spike-nexus
//	cd tests/interop/go && go run ./cmd/sdkload -bin-dir ../../../target/release
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	spike "github.com/spiffe/spike-sdk-go/api"
	"github.com/spiffe/spike-sdk-go/config/env"

	"github.com/spike-rs/spike-rs/tests/interop/go/internal/sdkload"
)

const secretPath = "sdkload/db/creds"

var secretValue = map[string]string{"username": "sdkload", "password": "s3cr3t-<&>"}

func main() {
	mode := flag.String("mode", "both", "per-call, keepalive or both")
	duration := flag.Duration("duration", 10*time.Second, "how long each mode starts calls")
	workers := flag.Int("workers", 16, "concurrent goroutines")
	binDir := flag.String("bin-dir", "",
		"start spike-dev-agent and spike-nexus from this directory (default: use "+
			"SPIKE_NEXUS_API_URL and SPIFFE_ENDPOINT_SOCKET)")
	callTimeout := flag.Duration("call-timeout", 30*time.Second, "limit for one call")
	keep := flag.Bool("keep", false, "keep the scratch directory (logs) of a started system")
	flag.Parse()

	var modes []string
	switch *mode {
	case "both":
		// keepalive first: a per-call run leaves its connections open for 30 s.
		modes = []string{sdkload.ModeKeepAlive, sdkload.ModePerCall}
	case sdkload.ModePerCall, sdkload.ModeKeepAlive:
		modes = []string{*mode}
	default:
		fatalf("-mode must be per-call, keepalive or both, not %q", *mode)
	}
	if *workers < 1 || *duration <= 0 {
		fatalf("-workers and -duration must be positive")
	}
	os.Exit(run(modes, sdkload.Options{
		Workers: *workers, Duration: *duration, CallTimeout: *callTimeout,
	}, *binDir, *keep))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sdkload: "+format+"\n", args...)
	os.Exit(2)
}

type report struct {
	Tool       string           `json:"tool"`
	Started    string           `json:"started"`
	GoVersion  string           `json:"go"`
	CPUs       int              `json:"cpus"`
	BinDir     string           `json:"bin_dir,omitempty"`
	DurationS  float64          `json:"duration_s"`
	Workers    int              `json:"workers"`
	LoadBefore string           `json:"loadavg_before,omitempty"`
	LoadAfter  string           `json:"loadavg_after,omitempty"`
	Results    []sdkload.Result `json:"results"`
}

func run(modes []string, o sdkload.Options, binDir string, keep bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var sys *sdkload.System
	if binDir != "" {
		var err error
		sys, err = sdkload.Start(binDir)
		if sys != nil {
			defer sys.Stop(keep)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "sdkload: cannot start the system: %v\n", err)
			if sys != nil {
				fmt.Fprint(os.Stderr, sys.LogTail(30))
			}
			return 1
		}
		// What the SDK reads: the Nexus URL (on every call) and the Workload API socket.
		os.Setenv("SPIKE_NEXUS_API_URL", sys.NexusURL)
		os.Setenv("SPIFFE_ENDPOINT_SOCKET", sys.Socket("pilot-superuser"))
		os.Setenv("SPIKE_TRUST_ROOT", sdkload.TrustDomain)
	} else if os.Getenv("SPIKE_NEXUS_API_URL") == "" || os.Getenv("SPIFFE_ENDPOINT_SOCKET") == "" {
		fmt.Fprintln(os.Stderr, "sdkload: give -bin-dir, or set SPIKE_NEXUS_API_URL and "+
			"SPIFFE_ENDPOINT_SOCKET")
		return 2
	}

	// As the SDK's guide shows: one API for the program, closed at the end.
	api, sdkErr := spike.New()
	if sdkErr != nil {
		fmt.Fprintf(os.Stderr, "sdkload: spike.New(): %v\n", sdkErr)
		return 1
	}
	defer api.Close()
	// The same identity, for the keepalive clients and /metrics.
	srcCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	src, err := workloadapi.NewX509Source(srcCtx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdkload: X509Source: %v\n", err)
		return 1
	}
	defer src.Close()

	rep := report{
		Tool: "sdkload", Started: time.Now().UTC().Format(time.RFC3339),
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), BinDir: binDir,
		DurationS: o.Duration.Seconds(), Workers: o.Workers, LoadBefore: loadavg(),
	}
	for i, mode := range modes {
		if ctx.Err() != nil {
			break
		}
		if sys != nil && i > 0 {
			// A fresh Nexus per mode: no connections left over, full rate-limit buckets.
			if err := sys.NewNexus(); err != nil {
				fmt.Fprintf(os.Stderr, "sdkload: restarting Nexus: %v\n%s", err,
					sys.LogTail(30))
				return 1
			}
			os.Setenv("SPIKE_NEXUS_API_URL", sys.NexusURL)
		} else if sys == nil && i > 0 {
			// Let the per-caller rate-limit bucket refill.
			time.Sleep(3 * time.Second)
		}
		nexusURL := env.NexusAPIRootVal()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		sdkErr := api.PutSecret(pctx, secretPath, secretValue)
		cancel()
		if sdkErr != nil {
			fmt.Fprintf(os.Stderr, "sdkload: PutSecret %s: %v\n", secretPath, sdkErr)
			if sys != nil {
				fmt.Fprint(os.Stderr, sys.LogTail(30))
			}
			return 1
		}
		var newWorker sdkload.NewWorker
		switch mode {
		case sdkload.ModePerCall:
			newWorker = sdkload.PerCall(api, secretPath, secretValue)
		case sdkload.ModeKeepAlive:
			newWorker, err = sdkload.KeepAlive(src, secretPath, secretValue)
			if err != nil {
				fmt.Fprintf(os.Stderr, "sdkload: %v\n", err)
				return 1
			}
		}
		// /metrics is read after the run too; a Nexus at its connection cap answers only
		// once the per-call mode's idle connections time out (30 s).
		r := sdkload.Measure(ctx, mode, o, newWorker, src, nexusURL, 40*time.Second)
		fmt.Println(r.String())
		if s := r.ErrorSummary(5); s != "" {
			fmt.Print(s)
		}
		if r.MetricsErr != nil {
			fmt.Printf("  (Nexus /metrics not read: %s)\n",
				strings.ReplaceAll(r.MetricsErr.Error(), "\n", "; "))
		}
		rep.Results = append(rep.Results, r)
	}
	rep.LoadAfter = loadavg()
	b, err := json.Marshal(rep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdkload: %v\n", err)
		return 1
	}
	fmt.Println(string(b))
	if ctx.Err() != nil {
		return 130
	}
	return 0
}

// loadavg is the first three fields of /proc/loadavg, or "" where there is none.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
