package sdkload

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
	spike "github.com/spiffe/spike-sdk-go/api"
	"github.com/spiffe/spike-sdk-go/api/entity/v1/reqres"
	sdkurl "github.com/spiffe/spike-sdk-go/api/url"
	sdkErrors "github.com/spiffe/spike-sdk-go/errors"
	sdknet "github.com/spiffe/spike-sdk-go/net"
)

// unexpectedStatus is the message spike-sdk-go's net.Post gives every status it has no code
// for (429 among them).
const unexpectedStatus = "unexpected status code from peer"

// errWrongValue is a call that succeeded with data other than what was stored.
var errWrongValue = errors.New("GetSecret returned the wrong value")

// PerCall reads path with api.GetSecret on every call, exactly as the SDK's guide shows
// (one api.New() for the program, shared by every goroutine; GetSecret per read), and checks
// the value against want.
func PerCall(api *spike.API, path string, want map[string]string) NewWorker {
	return func(int) (Worker, func()) {
		return func(ctx context.Context) error {
			s, err := api.GetSecret(ctx, path)
			if err != nil {
				return sdkError(err)
			}
			if s == nil || !maps.Equal(s.Data, want) {
				return errWrongValue
			}
			return nil
		}, func() {}
	}
}

// sdkError turns an SDK error into an error value (never a typed nil), marking the SDK's
// report of an unexpected HTTP status as a *StatusError.
func sdkError(err *sdkErrors.SDKError) error {
	if err.Is(sdkErrors.ErrNetPeerConnection) && err.Msg == unexpectedStatus && err.Wrapped == nil {
		return &StatusError{SDK: err}
	}
	return err
}

// GetRequestBody is what api.GetSecret(ctx, path) sends: secret.Get marshals
// reqres.SecretGetRequest{Path: path, Version: 0} with encoding/json, and `version` is
// omitempty, so the body is {"path":"<path>"}.
func GetRequestBody(path string) ([]byte, error) {
	return json.Marshal(reqres.SecretGetRequest{Path: path})
}

// KeepAlive sends api.GetSecret's request (same URL from the SDK's url.SecretGet, same body,
// same Content-Type) with one client per worker that is reused for every call. The client is
// the SDK's own net.CreateMTLSClientForNexus(src): the same mTLS config (Nexus authorised by
// the SDK's predicate) and the same transport settings GetSecret uses; only the reuse
// differs.
func KeepAlive(src *workloadapi.X509Source, path string, want map[string]string) (NewWorker,
	error) {
	body, err := GetRequestBody(path)
	if err != nil {
		return nil, err
	}
	endpoint := sdkurl.SecretGet()
	return func(int) (Worker, func()) {
		c := sdknet.CreateMTLSClientForNexus(src)
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint,
				bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return &StatusError{Status: resp.StatusCode}
			}
			var r reqres.SecretGetResponse
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("decoding %q: %w", b, err)
			}
			if r.Err != "" {
				return fmt.Errorf("error code %q in a 200 answer", r.Err)
			}
			if !maps.Equal(r.Data, want) {
				return errWrongValue
			}
			return nil
		}, c.CloseIdleConnections
	}, nil
}

// NexusRateLimited reads spike_nexus_rate_limited_total from Nexus's /metrics at nexusURL
// (an mTLS GET as src's identity, Nexus authorised the way the SDK authorises it), waiting
// at most timeout.
func NexusRateLimited(ctx context.Context, src *workloadapi.X509Source, nexusURL string,
	timeout time.Duration) (int64, error) {
	c := sdknet.CreateMTLSClientForNexus(src)
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		strings.TrimRight(nexusURL, "/")+"/metrics", nil)
	if err != nil {
		return -1, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return -1, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "spike_nexus_rate_limited_total "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return -1, err
	}
	return -1, errors.New("GET /metrics: no spike_nexus_rate_limited_total")
}

// Measure runs one mode and fills in Nexus's count of 429s over the run: /metrics is read
// before and after (waiting up to metricsWait each time: a Nexus that stops accepting
// connections answers late), and NexusRateLimited stays -1 if either read fails.
func Measure(ctx context.Context, mode string, o Options, newWorker NewWorker,
	src *workloadapi.X509Source, nexusURL string, metricsWait time.Duration) Result {
	before, errBefore := NexusRateLimited(ctx, src, nexusURL, metricsWait)
	r := Run(ctx, mode, o, newWorker)
	after, errAfter := NexusRateLimited(context.WithoutCancel(ctx), src, nexusURL, metricsWait)
	if errBefore == nil && errAfter == nil {
		r.NexusRateLimited = after - before
	}
	r.MetricsErr = errors.Join(errBefore, errAfter)
	return r
}
