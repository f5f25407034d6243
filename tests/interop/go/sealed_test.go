package interop

// A second Nexus on the sled backend starts sealed (no root key, no Keepers): the SDK must
// see state_not_ready, and operator restore must report progress in SPIKE's shape.

import (
	"net/http"
	"testing"

	"github.com/spiffe/spike-sdk-go/api/entity/v1/reqres"
	sdkErrors "github.com/spiffe/spike-sdk-go/errors"
)

// sealedNexus starts a sled-backed Nexus with no Keepers and returns its https:// URL;
// stopped at cleanup.
func sealedNexus(t *testing.T) string {
	t.Helper()
	return extraNexus(t, "nexus-sealed",
		"SPIKE_NEXUS_BACKEND_STORE=sled", "SPIKE_NEXUS_KEEPER_PEERS=")
}

func TestSealedNexus(t *testing.T) {
	url := sealedNexus(t)
	// The SDK reads the Nexus URL from the environment on every call; t.Setenv restores it.
	t.Setenv("SPIKE_NEXUS_API_URL", url)

	api := superuser(t)
	_, err := api.GetSecret(ctx(t), "tenants/demo/db/creds")
	mustFail(t, "GetSecret on a sealed Nexus", err, sdkErrors.ErrStateNotReady)
	mustFail(t, "PutSecret on a sealed Nexus",
		api.PutSecret(ctx(t), "a/b", map[string]string{"k": "v"}), sdkErrors.ErrStateNotReady)
	_, err = api.ListAllPolicies(ctx(t))
	mustFail(t, "ListAllPolicies on a sealed Nexus", err, sdkErrors.ErrStateNotReady)
	_, err = api.CipherEncrypt(ctx(t), []byte("x"), "")
	mustFail(t, "CipherEncrypt on a sealed Nexus", err, sdkErrors.ErrStateNotReady)

	// One shard of a 2-of-3 split: collected 1, remaining 1, not restored.
	var shard [32]byte
	shard[31] = 7
	status, err := as(t, "pilot-restore").Restore(ctx(t), 1, &shard)
	mustOK(t, "Restore one shard", err)
	if status.ShardsCollected != 1 || status.ShardsRemaining != 1 || status.Restored {
		t.Fatalf("Restore status: %+v", status)
	}
	// The same id again is not counted twice; the bytes are SPIKE's RestoreResponse.
	c := mtlsClient(source(t, "pilot-restore"), nexusID)
	r, err2 := postTo(t, c, url, http.MethodPost, "/v1/operator/restore", "application/json",
		[]byte(`{"id":1,"shard":[`+shardJSON()+`]}`))
	if err2 != nil {
		t.Fatal(err2)
	}
	expect(t, "restore again", r, 200)
	again := sameAsGo[reqres.RestoreResponse](t, "restore again", r.body)
	if again.ShardsCollected != 1 || again.ShardsRemaining != 1 || again.Restored {
		t.Fatalf("restore again: %s", r.body)
	}

	// Recover passes the not-ready gate (as in SPIKE) but has no root key to split: not 200.
	rc := mtlsClient(source(t, "pilot-recover"), nexusID)
	r, err2 = postTo(t, rc, url, http.MethodPost, "/v1/operator/recover", "application/json",
		[]byte(`{}`))
	if err2 != nil {
		t.Fatal(err2)
	}
	if r.status == 200 {
		t.Fatalf("recover on a sealed Nexus: 200 %s", r.body)
	}
}
