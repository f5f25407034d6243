// Package sdkload drives many concurrent secret reads through SPIKE's Go SDK (spike-sdk-go,
// unmodified) against a Nexus and measures them. It is shared by the interop test
// (sdk_load_test.go) and the load runner (cmd/sdkload).
//
// Two ways of reading the same secret are measured:
//
//   - ModePerCall: api.GetSecret per call, as the SDK's guide teaches. The SDK builds a new
//     http.Client (and http.Transport) inside every call (net.PostAndUnmarshal →
//     net.CreateMTLSClientForNexus), so every call makes a new TCP connection and a full mTLS
//     handshake, and leaves that connection idle in an unreachable Transport until its
//     IdleConnTimeout (30 s by default) closes it.
//   - ModeKeepAlive: the same request bytes, POSTed with one client per worker made by the SDK's
//     own net.CreateMTLSClientForNexus (same TLS config and transport settings) but reused, so a
//     worker keeps one connection alive.
package sdkload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Modes.
const (
	ModePerCall   = "per-call"
	ModeKeepAlive = "keepalive"
)

// Options bound one run. A run stops starting calls when Duration has passed or Calls calls
// have been started, whichever comes first (0 means no bound of that kind), or when the
// context passed to Run ends.
type Options struct {
	Workers     int
	Duration    time.Duration
	Calls       int
	CallTimeout time.Duration // per call; 0 means 30 s
}

// Worker makes one call. It returns nil on success (right value), *StatusError for a refused
// answer, or any other error.
type Worker func(ctx context.Context) error

// NewWorker sets up the state of worker i (for example its HTTP client); done is called when
// the worker stops.
type NewWorker func(i int) (w Worker, done func())

// StatusError is a call answered with an HTTP status other than 200.
type StatusError struct {
	// Status is the HTTP status, or 0 when the SDK hid it: spike-sdk-go reports every status
	// but 200/400/401/404/503 as `[net_peer_connection] unexpected status code from peer`
	// (net/post.go), and that is how a 429 reaches an SDK caller.
	Status int
	// SDK is the SDK's error when Status is 0.
	SDK error
}

func (e *StatusError) Error() string {
	if e.Status == 0 && e.SDK != nil {
		return e.SDK.Error()
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// tooMany reports whether err is a 429, or the SDK's report of an unexpected status (which is
// where a 429 lands).
func tooMany(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && (se.Status == 429 || se.Status == 0)
}

// Result is what one run measured. Latencies are over every call that finished (successful
// or not); calls cut off by the end of the run's context are counted as Unfinished only.
type Result struct {
	Mode       string        `json:"mode"`
	Workers    int           `json:"workers"`
	Elapsed    time.Duration `json:"-"`
	Calls      int           `json:"calls"`  // finished calls
	OK         int           `json:"ok"`     // finished with the right value
	Errors     int           `json:"errors"` // finished with any error (429s included)
	TooMany    int           `json:"http_429"`
	Unfinished int           `json:"unfinished"`
	Slow       int           `json:"over_1s"` // calls that took more than 1 s
	P50        time.Duration `json:"-"`
	P99        time.Duration `json:"-"`
	Max        time.Duration `json:"-"`
	// NexusRateLimited is the change of Nexus's spike_nexus_rate_limited_total over the run
	// (the exact number of 429s it sent), or -1 when it could not be read.
	NexusRateLimited int64 `json:"nexus_rate_limited"`
	// MetricsErr is why NexusRateLimited could not be read.
	MetricsErr error `json:"-"`
	// ErrorKinds counts errors by message (addresses and ports masked), most frequent first.
	ErrorKinds []ErrorKind `json:"error_kinds,omitempty"`
}

// ErrorKind is one error message and how often it was seen.
type ErrorKind struct {
	Msg   string `json:"msg"`
	Count int    `json:"count"`
}

// CallsPerSec is finished calls per second of wall time.
func (r *Result) CallsPerSec() float64 { return perSec(r.Calls, r.Elapsed) }

// OKPerSec is successful calls per second of wall time.
func (r *Result) OKPerSec() float64 { return perSec(r.OK, r.Elapsed) }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// MarshalJSON adds the derived figures, durations in milliseconds.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return json.Marshal(struct {
		plain
		ElapsedS    float64 `json:"elapsed_s"`
		CallsPerSec float64 `json:"calls_per_s"`
		OKPerSec    float64 `json:"ok_per_s"`
		P50ms       float64 `json:"p50_ms"`
		P99ms       float64 `json:"p99_ms"`
		Maxms       float64 `json:"max_ms"`
	}{
		plain(r), math.Round(r.Elapsed.Seconds()*1000) / 1000,
		math.Round(r.CallsPerSec()*10) / 10, math.Round(r.OKPerSec()*10) / 10,
		ms(r.P50), ms(r.P99), ms(r.Max),
	})
}

// String is the one-line human summary.
func (r *Result) String() string {
	s := fmt.Sprintf("%-9s workers=%d %.2fs: %d calls %.1f/s (ok %d, %.1f/s), "+
		"p50 %s p99 %s max %s, >1s %d, errors %d, 429s %d",
		r.Mode, r.Workers, r.Elapsed.Seconds(), r.Calls, r.CallsPerSec(), r.OK, r.OKPerSec(),
		round(r.P50), round(r.P99), round(r.Max), r.Slow, r.Errors, r.TooMany)
	if r.NexusRateLimited >= 0 {
		s += fmt.Sprintf(" (nexus rate_limited +%d)", r.NexusRateLimited)
	}
	if r.Unfinished > 0 {
		s += fmt.Sprintf(", unfinished %d", r.Unfinished)
	}
	return s
}

// ErrorSummary lists the most frequent error kinds, one per line, or "".
func (r *Result) ErrorSummary(max int) string {
	var b strings.Builder
	for i, k := range r.ErrorKinds {
		if i == max {
			fmt.Fprintf(&b, "  ... %d more kinds\n", len(r.ErrorKinds)-max)
			break
		}
		fmt.Fprintf(&b, "  %6d x %s\n", k.Count, k.Msg)
	}
	return b.String()
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// masks hides what differs from one failing call to the next (ephemeral ports, addresses).
var masks = regexp.MustCompile(`(\[[0-9a-fA-F:]+\]|\b[0-9]+(\.[0-9]+){3})(:[0-9]+)?`)

func errorKind(err error) string {
	return masks.ReplaceAllString(err.Error(), "ADDR")
}

type tally struct {
	lat                                 []time.Duration
	ok, errs, tooMany, unfinished, slow int
	kinds                               map[string]int
}

// Run runs o.Workers workers made by newWorker until the bounds of o, and measures them.
func Run(ctx context.Context, mode string, o Options, newWorker NewWorker) Result {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 30 * time.Second
	}
	var deadline time.Time
	if o.Duration > 0 {
		deadline = time.Now().Add(o.Duration)
	}
	var started atomic.Int64
	tallies := make([]tally, o.Workers)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range o.Workers {
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			w, done := newWorker(i)
			defer done()
			t.kinds = map[string]int{}
			for ctx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				if o.Calls > 0 && started.Add(1) > int64(o.Calls) {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, o.CallTimeout)
				s := time.Now()
				err := w(cctx)
				d := time.Since(s)
				cancel()
				if err != nil && ctx.Err() != nil {
					// Cut off by the end of the run, not answered by the server.
					t.unfinished++
					return
				}
				t.lat = append(t.lat, d)
				if d > time.Second {
					t.slow++
				}
				if err == nil {
					t.ok++
					continue
				}
				t.errs++
				if tooMany(err) {
					t.tooMany++
				}
				t.kinds[errorKind(err)]++
			}
		}(&tallies[i])
	}
	wg.Wait()

	r := Result{Mode: mode, Workers: o.Workers, Elapsed: time.Since(t0), NexusRateLimited: -1}
	var lat []time.Duration
	kinds := map[string]int{}
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		r.OK += t.ok
		r.Errors += t.errs
		r.TooMany += t.tooMany
		r.Unfinished += t.unfinished
		r.Slow += t.slow
		for k, n := range t.kinds {
			kinds[k] += n
		}
	}
	r.Calls = len(lat)
	slices.Sort(lat)
	r.P50, r.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	for k, n := range kinds {
		r.ErrorKinds = append(r.ErrorKinds, ErrorKind{Msg: k, Count: n})
	}
	slices.SortFunc(r.ErrorKinds, func(a, b ErrorKind) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Msg, b.Msg)
	})
	return r
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
