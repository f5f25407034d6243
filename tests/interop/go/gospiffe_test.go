package interop

// go-spiffe (the reference SPIFFE library) against spike-rs: its Workload API client gets
// SVIDs from spike-dev-agent and sees them rotate; its tlsconfig.MTLSClientConfig with
// AuthorizeID(nexus) talks to spike-nexus.

import (
	"bytes"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// mtlsClient presents src's SVID and accepts only a server whose SVID is exactly serverID.
// Keep-alives are off so every request makes a fresh handshake (with the current SVIDs).
func mtlsClient(src *workloadapi.X509Source, serverID string) *http.Client {
	conf := tlsconfig.MTLSClientConfig(src, src,
		tlsconfig.AuthorizeID(spiffeid.RequireFromString(serverID)))
	return &http.Client{
		Timeout:   callTimeout,
		Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true},
	}
}

type rawResponse struct {
	status  int
	header  http.Header
	body    []byte
	nexusID string // the server's SPIFFE ID, from its verified certificate
	leaf    *x509.Certificate
}

// post sends one request to the shared Nexus and reads the whole answer.
func post(t *testing.T, c *http.Client, method, path, contentType string,
	body []byte) (*rawResponse, error) {
	t.Helper()
	return postTo(t, c, sys.nexusURL, method, path, contentType, body)
}

// postTo is post to the Nexus at base (https://host:port).
func postTo(t *testing.T, c *http.Client, base, method, path, contentType string,
	body []byte) (*rawResponse, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &rawResponse{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		r.leaf = resp.TLS.PeerCertificates[0]
		if id, err := x509svid.IDFromCert(r.leaf); err == nil {
			r.nexusID = id.String()
		}
	}
	return r, nil
}

func mustPost(t *testing.T, c *http.Client, path, body string) *rawResponse {
	t.Helper()
	r, err := post(t, c, http.MethodPost, path, "application/json", []byte(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

func TestGoSpiffeX509SourceSeesRotation(t *testing.T) {
	src := source(t, "pilot-superuser")
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if first.ID.String() != superuserID {
		t.Fatalf("SVID ID %s, want %s", first.ID, superuserID)
	}
	leaf := first.Certificates[0]
	if life := leaf.NotAfter.Sub(time.Now()); life <= 0 || life > svidTTL+time.Second {
		t.Fatalf("SVID lifetime left %s, want at most the agent's TTL %s", life, svidTTL)
	}
	if _, _, err := x509svid.Verify(first.Certificates, src); err != nil {
		t.Fatalf("SVID does not verify against the agent's bundle: %v", err)
	}

	// The agent re-issues at half the TTL; the source must notice through its stream.
	deadline := time.After(3 * svidTTL)
	var second *x509svid.SVID
	for second == nil {
		select {
		case <-src.Updated():
			s, err := src.GetX509SVID()
			if err != nil {
				t.Fatal(err)
			}
			if s.Certificates[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				second = s
			}
		case <-deadline:
			t.Fatalf("no rotated SVID within %s", 3*svidTTL)
		}
	}
	if second.ID != first.ID {
		t.Fatalf("rotation changed the ID: %s → %s", first.ID, second.ID)
	}
	if !second.Certificates[0].NotAfter.After(leaf.NotAfter) {
		t.Fatalf("rotated SVID does not outlive the old one")
	}
	if _, _, err := x509svid.Verify(second.Certificates, src); err != nil {
		t.Fatalf("rotated SVID does not verify: %v", err)
	}

	// Nexus accepts the rotated SVID.
	r := mustPost(t, mtlsClient(src, nexusID), "/v1/store/secrets?action=list", "{}")
	if r.status != http.StatusOK || r.nexusID != nexusID {
		t.Fatalf("list with the rotated SVID: %d %s (server %s)", r.status, r.body, r.nexusID)
	}
}

func TestGoSpiffeNexusRotatesItsOwnSVID(t *testing.T) {
	c := mtlsClient(source(t, "pilot-superuser"), nexusID)
	r := mustPost(t, c, "/v1/store/secrets?action=list", "{}")
	if r.status != http.StatusOK || r.leaf == nil {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	first := r.leaf
	// Past the first certificate's expiry Nexus must still be reachable, with a new SVID.
	deadline := time.Now().Add(3 * svidTTL)
	for {
		time.Sleep(500 * time.Millisecond)
		r = mustPost(t, c, "/v1/store/secrets?action=list", "{}")
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		if r.leaf.SerialNumber.Cmp(first.SerialNumber) != 0 && time.Now().After(first.NotAfter) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Nexus still serves its first SVID (serial %s) after %s",
				first.SerialNumber, 3*svidTTL)
		}
	}
	if r.nexusID != nexusID {
		t.Fatalf("server ID after rotation: %s", r.nexusID)
	}
}

func TestGoSpiffeMTLSAuthorization(t *testing.T) {
	src := source(t, "pilot-superuser")

	// AuthorizeID(nexus) succeeds, and the answer carries SPIKE's headers.
	r := mustPost(t, mtlsClient(src, nexusID), "/v1/store/secrets?action=list", "{}")
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	for k, want := range map[string]string{
		"Content-Type":  "application/json",
		"Cache-Control": "no-store, no-cache, must-revalidate, private",
		"Pragma":        "no-cache",
		"Expires":       "0",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s: %q, want %q", k, got, want)
		}
	}

	// The client refuses a server that is not the ID it authorises.
	keeper := "spiffe://" + trustDomain + "/spike/keeper"
	if _, err := post(t, mtlsClient(src, keeper), http.MethodPost,
		"/v1/store/secrets?action=list", "application/json", []byte("{}")); err == nil {
		t.Fatal("AuthorizeID(keeper) accepted Nexus")
	}

	// Nexus refuses a client without an SVID.
	noCert := &http.Client{Timeout: callTimeout, Transport: &http.Transport{
		TLSClientConfig: tlsconfig.TLSClientConfig(src,
			tlsconfig.AuthorizeID(spiffeid.RequireFromString(nexusID))),
		DisableKeepAlives: true,
	}}
	if r, err := post(t, noCert, http.MethodPost, "/v1/store/secrets?action=list",
		"application/json", []byte("{}")); err == nil {
		t.Fatalf("Nexus answered a client without a certificate: %d %s", r.status, r.body)
	}

	// Role checks on routes the SDK cannot reach with the wrong identity (it exits first).
	demo := mtlsClient(source(t, "demo"), nexusID)
	for _, path := range []string{"/v1/operator/recover", "/v1/operator/restore"} {
		r := mustPost(t, demo, path, `{"id":1,"shard":[`+shardJSON()+`]}`)
		if r.status == http.StatusOK {
			t.Errorf("demo workload got 200 from %s: %s", path, r.body)
		}
	}
}

func shardJSON() string {
	var b bytes.Buffer
	for i := 0; i < 32; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if i == 31 {
			b.WriteByte('7')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}
