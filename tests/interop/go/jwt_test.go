package interop

// JWT-SVID callers (issue 17) with go-spiffe, the reference SPIFFE library: it fetches a
// JWT-SVID for a plain workload from spike-dev-agent's Workload API, verifies it against the
// JWT bundle it fetches from the same agent, and calls Nexus's JWT-SVID listener (TLS that
// authenticates Nexus only, no client certificate) with raw HTTP and
// `Authorization: Bearer <token>`.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spike-sdk-go/api/entity/data"

	"github.com/spike-rs/spike-rs/tests/interop/go/internal/procs"
)

const (
	// jwtAudience is Nexus's default SPIKE_NEXUS_JWT_AUDIENCE.
	jwtAudience = "spike-nexus"
	// jwtPeerID is another plain workload the test policy also grants; it has no agent entry.
	// The tampered token claims it, so only the signature can be why Nexus refuses it.
	jwtPeerID = "spiffe://spike.ist/workload/jwt-peer"
)

// jwtClient trusts the agent's X.509 bundle (fetched once through go-spiffe) and accepts
// only a server whose SVID is Nexus's; it presents no certificate. Keep-alives are off.
func jwtClient(t *testing.T) *http.Client {
	t.Helper()
	bundles, err := workloadapi.FetchX509Bundles(ctx(t), workloadapi.WithAddr(sys.socket("jwt-app")))
	if err != nil {
		t.Fatalf("FetchX509Bundles: %v", err)
	}
	conf := tlsconfig.TLSClientConfig(bundles,
		tlsconfig.AuthorizeID(spiffeid.RequireFromString(nexusID)))
	if conf.GetClientCertificate != nil || len(conf.Certificates) != 0 {
		t.Fatal("TLSClientConfig would present a client certificate")
	}
	// The JWT listener starts right after the mTLS one, once its first JWT bundle is in.
	err = procs.WaitFor("Nexus's JWT-SVID listener", startTimeout, func() error {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: conf}
		c, err := d.DialContext(context.Background(), "tcp", sys.jwtAddr)
		if err != nil {
			return err
		}
		return c.Close()
	}, sys.nexus)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Timeout:   callTimeout,
		Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true},
	}
}

type jwtAnswer struct {
	status  int
	body    []byte
	nexusID string // the server's SPIFFE ID, from its verified certificate
}

// jwtGet is a secret read on the JWT listener as raw HTTP: POST
// /v1/store/secrets?action=get {"path":path}, with `Authorization: Bearer token` unless
// token is "".
func jwtGet(t *testing.T, c *http.Client, token, path string) jwtAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"path": path})
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost,
		sys.jwtURL+"/v1/store/secrets?action=get", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s on the JWT listener: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer for %s: %v", path, err)
	}
	a := jwtAnswer{status: resp.StatusCode, body: b}
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		if id, err := x509svid.IDFromCert(resp.TLS.PeerCertificates[0]); err == nil {
			a.nexusID = id.String()
		}
	}
	return a
}

// wantUnauthorized checks SPIKE's refusal: 401 {"err":"access_unauthorized"}.
func wantUnauthorized(t *testing.T, what string, a jwtAnswer) {
	t.Helper()
	var got struct {
		Err string `json:"err"`
	}
	if a.status != http.StatusUnauthorized || json.Unmarshal(a.body, &got) != nil ||
		got.Err != "access_unauthorized" {
		t.Errorf("%s: %d %s, want 401 {\"err\":\"access_unauthorized\"}", what, a.status, a.body)
	}
}

// withSubject is token with its payload's `sub` replaced, header and signature kept.
func withSubject(t *testing.T, token, sub string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("a JWT-SVID is a compact JWS of 3 parts, got %d", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("payload is not base64url: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	claims["sub"] = sub
	raw, err = json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

func TestGoSpiffeJWTSVIDAgainstNexusJWTListener(t *testing.T) {
	const (
		granted   = "tenants/jwt-app/db/creds"
		ungranted = "tenants/jwt-other/db/creds"
		policy    = "jwt-app-read"
		idPat     = `^spiffe://spike\.ist/workload/jwt-(app|peer)$`
		pathPat   = `^tenants/jwt-app/.*$`
	)
	value := map[string]string{"username": "jwt-app", "password": "s3cr\u00e9t-<&>"}

	// As the superuser (SPIKE's SDK over mTLS): the secrets and a read-only policy.
	admin := superuser(t)
	mustOK(t, "PutSecret (granted)", admin.PutSecret(ctx(t), granted, value))
	mustOK(t, "PutSecret (not granted)", admin.PutSecret(ctx(t), ungranted,
		map[string]string{"k": "v"}))
	mustOK(t, "CreatePolicy", admin.CreatePolicy(ctx(t), policy, idPat, pathPat,
		[]data.PolicyPermission{data.PermissionRead}))

	// go-spiffe fetches the workload's JWT-SVID and the JWT bundles from our agent.
	socket := workloadapi.WithAddr(sys.socket("jwt-app"))
	svid, err := workloadapi.FetchJWTSVID(ctx(t), jwtsvid.Params{Audience: jwtAudience}, socket)
	if err != nil {
		t.Fatalf("FetchJWTSVID: %v", err)
	}
	if svid.ID.String() != jwtAppID || !slices.Equal(svid.Audience, []string{jwtAudience}) {
		t.Fatalf("JWT-SVID for %s audience %v, want %s audience [%s]",
			svid.ID, svid.Audience, jwtAppID, jwtAudience)
	}
	if left := time.Until(svid.Expiry); left <= 0 || left > time.Hour {
		t.Fatalf("JWT-SVID expires in %s", left)
	}
	token := svid.Marshal()

	// The token and the JWKS are standard: go-spiffe verifies one against the other offline…
	bundles, err := workloadapi.FetchJWTBundles(ctx(t), socket)
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	td := spiffeid.RequireTrustDomainFromString(trustDomain)
	if b, err := bundles.GetJWTBundleForTrustDomain(td); err != nil || len(b.JWTAuthorities()) == 0 {
		t.Fatalf("JWT bundle of %s: %v (authorities: %v)", td, err, b)
	}
	parsed, err := jwtsvid.ParseAndValidate(token, bundles, []string{jwtAudience})
	if err != nil {
		t.Fatalf("ParseAndValidate against the agent's JWT bundle: %v", err)
	}
	if parsed.ID.String() != jwtAppID || !parsed.Expiry.Equal(svid.Expiry) {
		t.Fatalf("ParseAndValidate: %s expiring %v, want %s expiring %v",
			parsed.ID, parsed.Expiry, jwtAppID, svid.Expiry)
	}
	if _, err := jwtsvid.ParseAndValidate(token, bundles, []string{"someone-else"}); err == nil {
		t.Fatal("ParseAndValidate accepted the token for another audience")
	}
	// …and the agent's ValidateJWTSVID agrees.
	validated, err := workloadapi.ValidateJWTSVID(ctx(t), token, jwtAudience, socket)
	if err != nil || validated.ID.String() != jwtAppID {
		t.Fatalf("ValidateJWTSVID: %v (%v)", err, validated)
	}

	c := jwtClient(t)

	// A read the policy grants: 200 and the value, from a server that proved it is Nexus.
	a := jwtGet(t, c, token, granted)
	if a.status != http.StatusOK {
		t.Fatalf("granted read: %d %s", a.status, a.body)
	}
	if a.nexusID != nexusID {
		t.Fatalf("the JWT listener's SVID is %q, want %s", a.nexusID, nexusID)
	}
	var got struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(a.body, &got); err != nil || !maps.Equal(got.Data, value) {
		t.Fatalf("granted read: %s (%v), want data %v", a.body, err, value)
	}

	// A path the policy does not grant (the secret exists).
	wantUnauthorized(t, "read outside the policy", jwtGet(t, c, token, ungranted))

	// The payload tampered (sub → another identity the policy grants), signature kept: go-spiffe
	// refuses it, and so must Nexus.
	forged := withSubject(t, token, jwtPeerID)
	if _, err := jwtsvid.ParseAndValidate(forged, bundles, []string{jwtAudience}); err == nil {
		t.Fatal("go-spiffe accepted the tampered token: the tampering is not a forgery")
	}
	wantUnauthorized(t, "tampered sub", jwtGet(t, c, forged, granted))

	// No token at all.
	wantUnauthorized(t, "no token", jwtGet(t, c, "", granted))

	// A genuine token for another audience.
	other, err := workloadapi.FetchJWTSVID(ctx(t), jwtsvid.Params{Audience: "someone-else"}, socket)
	if err != nil {
		t.Fatalf("FetchJWTSVID (another audience): %v", err)
	}
	wantUnauthorized(t, "token for another audience", jwtGet(t, c, other.Marshal(), granted))

	// The refusals changed nothing: the genuine token still reads.
	if a := jwtGet(t, c, token, granted); a.status != http.StatusOK {
		t.Fatalf("granted read after the refusals: %d %s", a.status, a.body)
	}
}
