package interop

// Byte-level checks: each Nexus response is decoded into spike-sdk-go's own request/response
// type and re-encoded with Go's encoding/json; the two must be the same bytes. That is what
// "byte-compatible" means here: a SPIKE Nexus (which marshals those very types) would have
// sent exactly this.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/spiffe/spike-sdk-go/api/entity/v1/reqres"
)

// sameAsGo decodes body into a fresh T (rejecting unknown fields) and checks that Go
// re-encodes it to the identical bytes.
func sameAsGo[T any](t *testing.T, what string, body []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %s does not decode into %T: %v", what, body, v, err)
	}
	again, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, body) {
		t.Errorf("%s: bytes differ from Go's encoding of %T\n ours: %s\n   go: %s",
			what, v, body, again)
	}
	return v
}

func expect(t *testing.T, what string, r *rawResponse, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
}

func TestWireBytesMatchGoEncoding(t *testing.T) {
	c := mtlsClient(source(t, "pilot-superuser"), nexusID)
	const path = "tenants/wire/db"

	r := mustPost(t, c, "/v1/store/secrets",
		`{"path":"`+path+`","values":{"b":"<html> & \u2028","a":"tab\there","z":"\u007f"}}`)
	expect(t, "put", r, 200)
	sameAsGo[reqres.SecretPutResponse](t, "put", r.body)
	r = mustPost(t, c, "/v1/store/secrets", `{"path":"`+path+`","values":{"a":"2"}}`)
	expect(t, "put 2", r, 200)

	r = mustPost(t, c, "/v1/store/secrets?action=get", `{"path":"`+path+`","version":1}`)
	expect(t, "get v1", r, 200)
	got := sameAsGo[reqres.SecretGetResponse](t, "get v1", r.body)
	if got.Data["b"] != "<html> & \u2028" || got.Data["z"] != "\u007f" {
		t.Fatalf("get v1 values: %q", got.Data)
	}

	r = mustPost(t, c, "/v1/store/secrets?action=get", `{"path":"tenants/wire/missing"}`)
	expect(t, "get missing", r, 404)
	sameAsGo[reqres.SecretGetResponse](t, "get missing", r.body)

	r = mustPost(t, c, "/v1/store/secrets?action=list", `{}`)
	expect(t, "list", r, 200)
	sameAsGo[reqres.SecretListResponse](t, "list", r.body)

	r = mustPost(t, c, "/v1/store/secrets?action=delete", `{"path":"`+path+`","versions":[1]}`)
	expect(t, "delete", r, 200)
	sameAsGo[reqres.SecretDeleteResponse](t, "delete", r.body)

	r = mustPost(t, c, "/v1/store/secrets/metadata?action=get", `{"path":"`+path+`"}`)
	expect(t, "metadata", r, 200)
	meta := sameAsGo[reqres.SecretMetadataResponse](t, "metadata", r.body)
	if meta.Versions[1].DeletedTime == nil || meta.Versions[2].DeletedTime != nil {
		t.Fatalf("metadata deletedTime: %+v", meta.Versions)
	}

	r = mustPost(t, c, "/v1/store/secrets?action=undelete", `{"path":"`+path+`","versions":[1]}`)
	expect(t, "undelete", r, 200)
	sameAsGo[reqres.SecretUndeleteResponse](t, "undelete", r.body)

	// Policies.
	r = mustPost(t, c, "/v1/acl/policy", `{"name":"wire","spiffeidPattern":`+
		`"^spiffe://spike\\.ist/workload/wire$","pathPattern":"^tenants/wire/.*$",`+
		`"permissions":["read","list"]}`)
	expect(t, "policy put", r, 200)
	sameAsGo[reqres.PolicyPutResponse](t, "policy put", r.body)
	t.Cleanup(func() { mustPost(t, c, "/v1/acl/policy?action=delete", `{"id":"wire"}`) })

	r = mustPost(t, c, "/v1/acl/policy?action=get", `{"id":"wire"}`)
	expect(t, "policy get", r, 200)
	p := sameAsGo[reqres.PolicyReadResponse](t, "policy get", r.body)
	if p.SPIFFEIDPattern != `^spiffe://spike\.ist/workload/wire$` {
		t.Fatalf("policy get: SPIFFE ID pattern %q (key spiffiedPattern)", p.SPIFFEIDPattern)
	}

	r = mustPost(t, c, "/v1/acl/policy?action=list", `{"spiffeidPattern":"","pathPattern":""}`)
	expect(t, "policy list", r, 200)
	sameAsGo[reqres.PolicyListResponse](t, "policy list", r.body)

	r = mustPost(t, c, "/v1/acl/policy?action=get", `{"id":"no-such-policy"}`)
	expect(t, "policy get missing", r, 404)
	sameAsGo[reqres.PolicyReadResponse](t, "policy get missing", r.body)

	// Cipher, JSON mode: base64 byte fields, version as a number.
	pt := []byte("json mode \x00\x01")
	r = mustPost(t, c, "/v1/cipher/encrypt",
		`{"plaintext":"`+base64.StdEncoding.EncodeToString(pt)+`"}`)
	expect(t, "encrypt", r, 200)
	enc := sameAsGo[reqres.CipherEncryptResponse](t, "encrypt", r.body)
	if enc.Version != 1 || len(enc.Nonce) != 12 || len(enc.Ciphertext) != len(pt)+16 {
		t.Fatalf("encrypt: %+v", enc)
	}
	req, _ := json.Marshal(reqres.CipherDecryptRequest{
		Version: enc.Version, Nonce: enc.Nonce, Ciphertext: enc.Ciphertext})
	r = mustPost(t, c, "/v1/cipher/decrypt", string(req))
	expect(t, "decrypt", r, 200)
	dec := sameAsGo[reqres.CipherDecryptResponse](t, "decrypt", r.body)
	if !bytes.Equal(dec.Plaintext, pt) {
		t.Fatalf("decrypt: %q", dec.Plaintext)
	}
	// ...and the SDK decrypts the JSON-mode ciphertext too.
	out, err := superuser(t).CipherDecrypt(ctx(t), enc.Version, enc.Nonce, enc.Ciphertext, "")
	mustOK(t, "SDK CipherDecrypt of a JSON-mode ciphertext", err)
	if !bytes.Equal(out, pt) {
		t.Fatalf("SDK CipherDecrypt: %q", out)
	}

	// Empty plaintext: Go sends `""`; both answers must still be Go's own bytes.
	r = mustPost(t, c, "/v1/cipher/encrypt", `{"plaintext":""}`)
	expect(t, "encrypt empty", r, 200)
	enc = sameAsGo[reqres.CipherEncryptResponse](t, "encrypt empty", r.body)
	req, _ = json.Marshal(reqres.CipherDecryptRequest{
		Version: enc.Version, Nonce: enc.Nonce, Ciphertext: enc.Ciphertext})
	r = mustPost(t, c, "/v1/cipher/decrypt", string(req))
	expect(t, "decrypt empty", r, 200)
	if dec := sameAsGo[reqres.CipherDecryptResponse](t, "decrypt empty", r.body); len(dec.Plaintext) != 0 {
		t.Fatalf("decrypt empty: %q", dec.Plaintext)
	}

	// Errors carry the route's own zero-valued body.
	r = mustPost(t, c, "/v1/cipher/decrypt", `{"version":1,"nonce":"AAAA","ciphertext":""}`)
	expect(t, "decrypt with a 3-byte nonce", r, 400)
	sameAsGo[reqres.CipherDecryptResponse](t, "decrypt bad nonce", r.body)
}

func TestWireFallbackAndRestore(t *testing.T) {
	c := mtlsClient(source(t, "pilot-superuser"), nexusID)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPost, "/v1/no/such/route"},
		{http.MethodPost, "/v1/store/secrets?action=nope"},
		{http.MethodPost, "/v1/store/secrets/"},
		{http.MethodGet, "/v1/store/secrets?action=list"},
		{http.MethodPut, "/v1/store/secrets"},
	} {
		r, err := post(t, c, tc.method, tc.path, "application/json", []byte("{}"))
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		if r.status != 400 || string(r.body) != `{"err":"api_bad_request"}` {
			t.Errorf("%s %s: %d %s, want SPIKE's fallback 400 {\"err\":\"api_bad_request\"}",
				tc.method, tc.path, r.status, r.body)
		}
	}

	// Restore on the memory backend: 400 with the restore response's own body.
	rc := mtlsClient(source(t, "pilot-restore"), nexusID)
	r := mustPost(t, rc, "/v1/operator/restore", `{"id":1,"shard":[`+shardJSON()+`]}`)
	expect(t, "restore on memory", r, 400)
	sameAsGo[reqres.RestoreResponse](t, "restore on memory", r.body)
}
