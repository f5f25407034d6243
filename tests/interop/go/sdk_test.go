package interop

// SPIKE's Go SDK (spike-sdk-go v0.19.9, unmodified), through its public API only, against
// spike-rs's Nexus. Errors are checked the way SPIKE's own callers check them: by SDK error
// code (the SDK turns HTTP statuses into codes, net/post.go).

import (
	"bytes"
	"maps"
	"slices"
	"testing"
	"time"

	spike "github.com/spiffe/spike-sdk-go/api"
	"github.com/spiffe/spike-sdk-go/api/entity/data"
	sdkErrors "github.com/spiffe/spike-sdk-go/errors"
)

// superuser is an SDK client made the way SPIKE's Pilot makes it: api.New() reads
// SPIFFE_ENDPOINT_SOCKET (the dev agent's pilot-superuser socket).
func superuser(t *testing.T) *spike.API {
	t.Helper()
	api, err := spike.New()
	if err != nil {
		t.Fatalf("spike.New(): %v", err)
	}
	t.Cleanup(func() { _ = api.Close() })
	return api
}

// as is an SDK client for the dev-agent entry `name`, from a go-spiffe X509Source.
func as(t *testing.T, name string) *spike.API {
	t.Helper()
	return spike.NewWithSource(source(t, name))
}

func mustOK(t *testing.T, what string, err *sdkErrors.SDKError) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v (code %q)", what, err, err.Code)
	}
}

func mustFail(t *testing.T, what string, err *sdkErrors.SDKError, want *sdkErrors.SDKError) {
	t.Helper()
	if !isCode(err, want) {
		t.Fatalf("%s: got %v, want SDK error %q", what, err, want.Code)
	}
}

func wantData(t *testing.T, what string, s *data.Secret, want map[string]string) {
	t.Helper()
	if s == nil || !maps.Equal(s.Data, want) {
		t.Fatalf("%s: got %+v, want %v", what, s, want)
	}
}

func TestSDKSecretLifecycle(t *testing.T) {
	api := superuser(t)
	const path = "tenants/demo/db/creds"
	v1 := map[string]string{"username": "admin", "password": "v1-<&>-\u00e9"}
	v2 := map[string]string{"username": "admin", "password": "v2"}

	mustOK(t, "PutSecret v1", api.PutSecret(ctx(t), path, v1))
	mustOK(t, "PutSecret v2", api.PutSecret(ctx(t), path, v2))

	s, err := api.GetSecret(ctx(t), path)
	mustOK(t, "GetSecret", err)
	wantData(t, "GetSecret", s, v2)
	s, err = api.GetSecretVersion(ctx(t), path, 1)
	mustOK(t, "GetSecretVersion 1", err)
	wantData(t, "GetSecretVersion 1", s, v1)

	keys, err := api.ListSecretKeys(ctx(t))
	mustOK(t, "ListSecretKeys", err)
	if keys == nil || !slices.Contains(*keys, path) || !slices.IsSorted(*keys) {
		t.Fatalf("ListSecretKeys: %v, want a sorted list holding %q", keys, path)
	}

	meta, err := api.GetSecretMetadata(ctx(t), path, 0)
	mustOK(t, "GetSecretMetadata", err)
	m := meta.Metadata
	if m.CurrentVersion != 2 || m.OldestVersion != 1 || m.MaxVersions != 10 {
		t.Fatalf("metadata summary: %+v", m)
	}
	if m.CreatedTime.IsZero() || m.UpdatedTime.Before(m.CreatedTime) {
		t.Fatalf("metadata times: %+v", m)
	}
	if time.Since(m.CreatedTime) > time.Hour || time.Until(m.CreatedTime) > time.Minute {
		t.Fatalf("metadata createdTime is not now: %v", m.CreatedTime)
	}
	if len(meta.Versions) != 2 {
		t.Fatalf("metadata versions: %+v", meta.Versions)
	}
	for n, v := range meta.Versions {
		if v.Version != n || v.CreatedTime.IsZero() || v.DeletedTime != nil {
			t.Fatalf("metadata version %d: %+v", n, v)
		}
	}

	// Delete the current version (what `spike secret delete PATH` sends: versions [0]).
	mustOK(t, "DeleteSecretVersions [0]", api.DeleteSecretVersions(ctx(t), path, []int{0}))
	_, err = api.GetSecretVersion(ctx(t), path, 2)
	mustFail(t, "GetSecretVersion 2 after delete", err, sdkErrors.ErrAPINotFound)
	s, err = api.GetSecret(ctx(t), path)
	mustOK(t, "GetSecret after deleting v2 (v1 becomes current)", err)
	wantData(t, "GetSecret after delete", s, v1)
	meta, err = api.GetSecretMetadata(ctx(t), path, 0)
	mustOK(t, "GetSecretMetadata after delete", err)
	if meta.Metadata.CurrentVersion != 1 || meta.Versions[2].DeletedTime == nil {
		t.Fatalf("metadata after delete: %+v", meta)
	}
	_, err = api.GetSecretMetadata(ctx(t), path, 2)
	mustFail(t, "GetSecretMetadata of a deleted version", err, sdkErrors.ErrAPINotFound)

	mustOK(t, "UndeleteSecret [2]", api.UndeleteSecret(ctx(t), path, []int{2}))
	s, err = api.GetSecret(ctx(t), path)
	mustOK(t, "GetSecret after undelete", err)
	wantData(t, "GetSecret after undelete", s, v2)

	// Delete everything, then undelete with no versions: the highest deleted comes back.
	mustOK(t, "DeleteSecretVersions [1 2]", api.DeleteSecretVersions(ctx(t), path, []int{1, 2}))
	_, err = api.GetSecret(ctx(t), path)
	mustFail(t, "GetSecret with every version deleted", err, sdkErrors.ErrAPINotFound)
	mustOK(t, "UndeleteSecret []", api.UndeleteSecret(ctx(t), path, nil))
	s, err = api.GetSecret(ctx(t), path)
	mustOK(t, "GetSecret after undelete []", err)
	wantData(t, "GetSecret after undelete []", s, v2)

	// SPIKE's undelete [] with no current version restores only the highest deleted one.
	meta, err = api.GetSecretMetadata(ctx(t), path, 0)
	mustOK(t, "GetSecretMetadata after undelete []", err)
	if meta.Versions[1].DeletedTime == nil || meta.Versions[2].DeletedTime != nil {
		t.Fatalf("undelete [] must restore only v2: %+v", meta.Versions)
	}

	// DeleteSecret (the SDK's "current version" form, versions []) leaves nothing live.
	mustOK(t, "DeleteSecret", api.DeleteSecret(ctx(t), path))
	_, err = api.GetSecret(ctx(t), path)
	mustFail(t, "GetSecret after DeleteSecret", err, sdkErrors.ErrAPINotFound)
	mustOK(t, "UndeleteSecret [1]", api.UndeleteSecret(ctx(t), path, []int{1}))
	s, err = api.GetSecret(ctx(t), path)
	mustOK(t, "GetSecret after undeleting v1", err)
	wantData(t, "GetSecret after undeleting v1", s, v1)
	// Restoring nothing is SPIKE's entity_not_found (404); deleting nothing is not an error.
	mustFail(t, "UndeleteSecret of a live version",
		api.UndeleteSecret(ctx(t), path, []int{1}), sdkErrors.ErrAPINotFound)
	mustFail(t, "UndeleteSecret of an absent version",
		api.UndeleteSecret(ctx(t), path, []int{99}), sdkErrors.ErrAPINotFound)
	mustOK(t, "DeleteSecretVersions of an absent version",
		api.DeleteSecretVersions(ctx(t), path, []int{99}))
	mustOK(t, "DeleteSecretVersions of an already deleted version",
		api.DeleteSecretVersions(ctx(t), path, []int{2}))

	// Missing paths.
	_, err = api.GetSecret(ctx(t), "tenants/demo/nothing-here")
	mustFail(t, "GetSecret of a missing path", err, sdkErrors.ErrAPINotFound)
	mustFail(t, "DeleteSecret of a missing path",
		api.DeleteSecret(ctx(t), "tenants/demo/nothing-here"), sdkErrors.ErrAPINotFound)
	mustFail(t, "UndeleteSecret of a missing path",
		api.UndeleteSecret(ctx(t), "tenants/demo/nothing-here", nil), sdkErrors.ErrAPINotFound)
	_, err = api.GetSecretMetadata(ctx(t), "tenants/demo/nothing-here", 0)
	mustFail(t, "GetSecretMetadata of a missing path", err, sdkErrors.ErrAPINotFound)

	// Bad input is 400 → api_bad_request (SPIKE validates each key with its name rule).
	mustFail(t, "PutSecret with a bad key",
		api.PutSecret(ctx(t), "tenants/demo/bad", map[string]string{"a.b": "v"}),
		sdkErrors.ErrAPIBadRequest)
}

func TestSDKPolicyAndForbiddenCalls(t *testing.T) {
	admin := superuser(t)
	demo := as(t, "demo")
	const (
		path     = "tenants/demo/db/app"
		name     = "demo-db-read"
		idPat    = `^spiffe://spike\.ist/workload/demo$`
		pathPat  = `^tenants/demo/db/.*$`
		otherPat = `^spiffe://spike\.ist/workload/nobody$`
	)
	mustOK(t, "PutSecret", admin.PutSecret(ctx(t), path, map[string]string{"k": "v"}))

	// No policy yet: a plain workload is refused, as SPIKE refuses it (401).
	_, err := demo.GetSecret(ctx(t), path)
	mustFail(t, "demo GetSecret without a policy", err, sdkErrors.ErrAccessUnauthorized)

	mustOK(t, "CreatePolicy", admin.CreatePolicy(ctx(t), name, idPat, pathPat,
		[]data.PolicyPermission{data.PermissionRead, data.PermissionList}))
	mustOK(t, "CreatePolicy (other)", admin.CreatePolicy(ctx(t), "nobody-read", otherPat,
		pathPat, []data.PolicyPermission{data.PermissionRead}))

	s, err := demo.GetSecret(ctx(t), path)
	mustOK(t, "demo GetSecret with read", err)
	wantData(t, "demo GetSecret", s, map[string]string{"k": "v"})
	_, err = demo.GetSecretMetadata(ctx(t), path, 0)
	mustOK(t, "demo GetSecretMetadata with read", err)

	// Forbidden: what the policy does not grant.
	mustFail(t, "demo PutSecret (read-only policy)",
		demo.PutSecret(ctx(t), path, map[string]string{"k": "x"}), sdkErrors.ErrAccessUnauthorized)
	mustFail(t, "demo DeleteSecret (read-only policy)",
		demo.DeleteSecret(ctx(t), path), sdkErrors.ErrAccessUnauthorized)
	_, err = demo.GetSecret(ctx(t), "tenants/other/db")
	mustFail(t, "demo GetSecret outside its path pattern", err, sdkErrors.ErrAccessUnauthorized)
	mustFail(t, "demo CreatePolicy", demo.CreatePolicy(ctx(t), "evil", `^spiffe://spike\.ist/.*$`,
		`^.*$`, []data.PolicyPermission{data.PermissionSuper}), sdkErrors.ErrAccessUnauthorized)
	_, err = demo.ListAllPolicies(ctx(t))
	mustFail(t, "demo ListAllPolicies", err, sdkErrors.ErrAccessUnauthorized)
	_, err = demo.GetPolicy(ctx(t), name)
	mustFail(t, "demo GetPolicy", err, sdkErrors.ErrAccessUnauthorized)
	_, err = demo.CipherEncryptStream(ctx(t), bytes.NewReader([]byte("x")))
	mustFail(t, "demo CipherEncryptStream (no execute)", err, sdkErrors.ErrAccessUnauthorized)

	// Read the policy back: note SPIKE's JSON key `spiffiedPattern` in data.Policy.
	p, err := admin.GetPolicy(ctx(t), name)
	mustOK(t, "GetPolicy", err)
	if p.Name != name || p.SPIFFEIDPattern != idPat || p.PathPattern != pathPat {
		t.Fatalf("GetPolicy: %+v", p)
	}
	if !slices.Equal(p.Permissions,
		[]data.PolicyPermission{data.PermissionRead, data.PermissionList}) {
		t.Fatalf("GetPolicy permissions: %v", p.Permissions)
	}
	if p.CreatedAt.IsZero() || p.UpdatedAt.Before(p.CreatedAt) {
		t.Fatalf("GetPolicy times: created %v updated %v", p.CreatedAt, p.UpdatedAt)
	}

	all, err := admin.ListAllPolicies(ctx(t))
	mustOK(t, "ListAllPolicies", err)
	names := policyNames(all)
	if !slices.Contains(names, name) || !slices.Contains(names, "nobody-read") {
		t.Fatalf("ListAllPolicies: %v", names)
	}
	byID, err := admin.ListPolicies(ctx(t), idPat, "")
	mustOK(t, "ListPolicies by SPIFFE ID pattern", err)
	if got := policyNames(byID); !slices.Equal(got, []string{name}) {
		t.Fatalf("ListPolicies(idPat): %v", got)
	}
	byPath, err := admin.ListPolicies(ctx(t), "", pathPat)
	mustOK(t, "ListPolicies by path pattern", err)
	if got := policyNames(byPath); len(got) != 2 {
		t.Fatalf("ListPolicies(pathPat): %v", got)
	}
	none, err := admin.ListPolicies(ctx(t), `^spiffe://spike\.ist/none$`, "")
	mustOK(t, "ListPolicies with no match", err)
	if none == nil || len(*none) != 0 {
		t.Fatalf("ListPolicies with no match: %v", none)
	}

	// Upsert by name (`spike policy apply`): keeps createdAt.
	time.Sleep(20 * time.Millisecond)
	mustOK(t, "CreatePolicy again (upsert)", admin.CreatePolicy(ctx(t), name, idPat, pathPat,
		[]data.PolicyPermission{data.PermissionRead, data.PermissionList, data.PermissionWrite}))
	p2, err := admin.GetPolicy(ctx(t), name)
	mustOK(t, "GetPolicy after upsert", err)
	if !p2.CreatedAt.Equal(p.CreatedAt) || len(p2.Permissions) != 3 {
		t.Fatalf("upsert: before %+v after %+v", p, p2)
	}
	if !p2.UpdatedAt.After(p.UpdatedAt) {
		t.Fatalf("upsert did not move updatedAt: before %v after %v", p.UpdatedAt, p2.UpdatedAt)
	}
	mustOK(t, "demo PutSecret with write", demo.PutSecret(ctx(t), path,
		map[string]string{"k": "by-demo"}))

	mustOK(t, "DeletePolicy", admin.DeletePolicy(ctx(t), name))
	mustOK(t, "DeletePolicy (other)", admin.DeletePolicy(ctx(t), "nobody-read"))
	_, err = demo.GetSecret(ctx(t), path)
	mustFail(t, "demo GetSecret after DeletePolicy", err, sdkErrors.ErrAccessUnauthorized)
	// SPIKE answers 500 for a missing policy (PROTOCOL.md, surprise 2); spike-rs answers 404,
	// which the SDK reports as api_not_found.
	_, err = admin.GetPolicy(ctx(t), name)
	mustFail(t, "GetPolicy after delete", err, sdkErrors.ErrAPINotFound)
	mustFail(t, "DeletePolicy twice", admin.DeletePolicy(ctx(t), name), sdkErrors.ErrAPINotFound)

	// Invalid input is 400 → api_bad_request.
	mustFail(t, "CreatePolicy with a bad name", admin.CreatePolicy(ctx(t), "bad/name", idPat,
		pathPat, []data.PolicyPermission{data.PermissionRead}), sdkErrors.ErrAPIBadRequest)
	mustFail(t, "CreatePolicy with no permissions", admin.CreatePolicy(ctx(t), "p", idPat,
		pathPat, nil), sdkErrors.ErrAPIBadRequest)
}

func policyNames(items *[]data.PolicyListItem) []string {
	if items == nil {
		return nil
	}
	var out []string
	for _, it := range *items {
		out = append(out, it.Name)
	}
	slices.Sort(out)
	return out
}

func TestSDKCipher(t *testing.T) {
	admin := superuser(t)
	plain := []byte("attack at dawn \x00\xff")

	// Streaming mode (`spike cipher encrypt` without --plaintext): 0x01 ‖ nonce[12] ‖ ct.
	blob, err := admin.CipherEncryptStream(ctx(t), bytes.NewReader(plain))
	mustOK(t, "CipherEncryptStream", err)
	if len(blob) != 1+12+len(plain)+16 || blob[0] != 1 {
		t.Fatalf("stream ciphertext framing: %d bytes, version %d", len(blob), blob[0])
	}
	out, err := admin.CipherDecryptStream(ctx(t), bytes.NewReader(blob))
	mustOK(t, "CipherDecryptStream", err)
	if !bytes.Equal(out, plain) {
		t.Fatalf("CipherDecryptStream: %q", out)
	}

	// JSON mode decrypt of the streamed ciphertext: same key, same format.
	out, err = admin.CipherDecrypt(ctx(t), blob[0], blob[1:13], blob[13:], "")
	mustOK(t, "CipherDecrypt (JSON)", err)
	if !bytes.Equal(out, plain) {
		t.Fatalf("CipherDecrypt: %q", out)
	}

	// JSON mode encrypt: the SDK returns only the ciphertext (it drops the nonce), so all a
	// caller can check is its length; cipher_json_test.go round-trips the full response.
	ct, err := admin.CipherEncrypt(ctx(t), plain, "")
	mustOK(t, "CipherEncrypt (JSON)", err)
	if len(ct) != len(plain)+16 {
		t.Fatalf("CipherEncrypt: %d bytes", len(ct))
	}

	// Tampered: streaming decrypt failure is 400, JSON decrypt failure is 500 (SPIKE's
	// statuses; the SDK reports 500 as net_peer_connection).
	bad := bytes.Clone(blob)
	bad[len(bad)-1] ^= 1
	_, err = admin.CipherDecryptStream(ctx(t), bytes.NewReader(bad))
	mustFail(t, "CipherDecryptStream of a tampered blob", err, sdkErrors.ErrAPIBadRequest)
	_, err = admin.CipherDecrypt(ctx(t), bad[0], bad[1:13], bad[13:], "")
	mustFail(t, "CipherDecrypt of a tampered ciphertext", err, sdkErrors.ErrNetPeerConnection)
	_, err = admin.CipherDecrypt(ctx(t), 2, blob[1:13], blob[13:], "")
	mustFail(t, "CipherDecrypt with version 2", err, sdkErrors.ErrAPIBadRequest)
	_, err = admin.CipherDecrypt(ctx(t), 1, blob[1:12], blob[13:], "")
	mustFail(t, "CipherDecrypt with an 11-byte nonce", err, sdkErrors.ErrAPIBadRequest)

	// The lite-workload role may use the cipher and nothing else.
	lite := as(t, "lite-workload")
	out, err = lite.CipherDecryptStream(ctx(t), bytes.NewReader(blob))
	mustOK(t, "lite CipherDecryptStream", err)
	if !bytes.Equal(out, plain) {
		t.Fatalf("lite CipherDecryptStream: %q", out)
	}
	_, err = lite.GetSecret(ctx(t), "tenants/demo/db/creds")
	mustFail(t, "lite GetSecret", err, sdkErrors.ErrAccessUnauthorized)

	// A plain workload gets the cipher through `execute` on spike/system/cipher/exec.
	demo := as(t, "demo")
	_, err = demo.CipherEncrypt(ctx(t), plain, "")
	mustFail(t, "demo CipherEncrypt without execute", err, sdkErrors.ErrAccessUnauthorized)
	mustOK(t, "CreatePolicy execute", admin.CreatePolicy(ctx(t), "demo-cipher",
		`^spiffe://spike\.ist/workload/demo$`, `^spike/system/cipher/exec$`,
		[]data.PolicyPermission{data.PermissionExecute}))
	t.Cleanup(func() { _ = admin.DeletePolicy(ctx(t), "demo-cipher") })
	out, err = demo.CipherDecryptStream(ctx(t), bytes.NewReader(blob))
	mustOK(t, "demo CipherDecryptStream with execute", err)
	if !bytes.Equal(out, plain) {
		t.Fatalf("demo CipherDecryptStream: %q", out)
	}
}

func TestSDKOperatorOnMemoryBackend(t *testing.T) {
	// With the memory backend SPIKE's Nexus answers recover and restore with 400.
	_, err := as(t, "pilot-recover").Recover(ctx(t))
	mustFail(t, "Recover on the memory backend", err, sdkErrors.ErrAPIBadRequest)
	var shard [32]byte
	shard[31] = 7
	_, err = as(t, "pilot-restore").Restore(ctx(t), 1, &shard)
	mustFail(t, "Restore on the memory backend", err, sdkErrors.ErrAPIBadRequest)
	// (The SDK exits the process when its own SVID is not the recover/restore role, so the
	// role checks on these routes are exercised over raw mTLS in gospiffe_test.go.)
}
