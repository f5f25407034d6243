package interop

// SPIKE's Pilot CLI (`spike`, module github.com/spiffe/spike) cannot be built here: the Go
// module proxy refuses that module (403 "This module version is not available." for
// @v/list, every tag and every pseudo-version), and we never vendor SPIKE's code. So these
// tests replay, through the same public spike-sdk-go API, the exact call sequences that
// `spike` commands make (read from spiffe/spike at 42547a7e, app/spike/internal/cmd/...),
// including the SDK helpers those commands call before talking to Nexus.

import (
	"bytes"
	"slices"
	"testing"

	spike "github.com/spiffe/spike-sdk-go/api"
	sdkErrors "github.com/spiffe/spike-sdk-go/errors"
	sdkid "github.com/spiffe/spike-sdk-go/spiffeid"
	"github.com/spiffe/spike-sdk-go/validation"
)

// Every `spike` command starts with a role check on its own SVID (IsPilotOperatorOrDie and
// friends, which exit the process on failure). The IDs spike-dev-agent issues must pass
// SPIKE's own predicates.
func TestPilotCLIRoleChecksAcceptDevAgentIDs(t *testing.T) {
	for _, tc := range []struct {
		socket string
		is     func(string) bool
		pred   string
	}{
		{"pilot-superuser", sdkid.IsPilotOperator, "IsPilotOperator"},
		{"pilot-recover", sdkid.IsPilotRecover, "IsPilotRecover"},
		{"pilot-restore", sdkid.IsPilotRestore, "IsPilotRestore"},
		{"nexus", sdkid.IsNexus, "IsNexus"},
		{"keeper", sdkid.IsKeeper, "IsKeeper"},
		{"bootstrap", sdkid.IsBootstrap, "IsBootstrap"},
		{"lite-workload", sdkid.IsLiteWorkload, "IsLiteWorkload"},
	} {
		svid, err := source(t, tc.socket).GetX509SVID()
		if err != nil {
			t.Fatalf("%s: %v", tc.socket, err)
		}
		if !tc.is(svid.ID.String()) {
			t.Errorf("spike-sdk-go %s(%s) is false for the %s socket", tc.pred, svid.ID,
				tc.socket)
		}
	}
	svid, err := source(t, "demo").GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if sdkid.IsPilotOperator(svid.ID.String()) || sdkid.IsLiteWorkload(svid.ID.String()) {
		t.Errorf("a plain workload passes a role predicate: %s", svid.ID)
	}
}

// findPolicyByName is what `spike policy get|delete NAME` do first (cmd/policy/filter.go).
func findPolicyByName(t *testing.T, api *spike.API, name string) bool {
	t.Helper()
	policies, err := api.ListAllPolicies(ctx(t))
	mustOK(t, "ListAllPolicies", err)
	for _, p := range *policies {
		if p.Name == name {
			return true
		}
	}
	return false
}

func TestPilotCLICallSequences(t *testing.T) {
	api := spike.NewWithSource(source(t, "pilot-superuser"))
	const name = "cli-web"
	const path = "secrets/cli/db"

	// spike policy create --name cli-web --spiffeid-pattern ... --path-pattern ...
	//   --permissions read,list
	perms, verr := validation.ValidatePermissions("read, list")
	mustOK(t, "ValidatePermissions", verr)
	if findPolicyByName(t, api, name) {
		t.Fatalf("policy %s exists before create", name)
	}
	mustOK(t, "policy create", api.CreatePolicy(ctx(t), name,
		`^spiffe://spike\.ist/workload/demo$`, `^secrets/cli/.*$`, perms))

	// spike policy apply (same name: upsert)
	perms, verr = validation.ValidatePermissions("read,list,write")
	mustOK(t, "ValidatePermissions", verr)
	mustOK(t, "policy apply", api.CreatePolicy(ctx(t), name,
		`^spiffe://spike\.ist/workload/demo$`, `^secrets/cli/.*$`, perms))

	// spike policy list --path-pattern '^secrets/cli/.*$'
	list, err := api.ListPolicies(ctx(t), "", `^secrets/cli/.*$`)
	mustOK(t, "policy list", err)
	if got := policyNames(list); !slices.Equal(got, []string{name}) {
		t.Fatalf("policy list: %v", got)
	}

	// spike policy get cli-web
	if !findPolicyByName(t, api, name) {
		t.Fatalf("policy get: %s not listed", name)
	}
	p, err := api.GetPolicy(ctx(t), name)
	mustOK(t, "policy get", err)
	if p.Name != name || len(p.Permissions) != 3 {
		t.Fatalf("policy get: %+v", p)
	}

	// spike secret put secrets/cli/db username=admin password=one
	mustOK(t, "secret put", api.PutSecret(ctx(t), path,
		map[string]string{"username": "admin", "password": "one"}))
	mustOK(t, "secret put", api.PutSecret(ctx(t), path,
		map[string]string{"username": "admin", "password": "two"}))

	// spike secret get secrets/cli/db --version 1
	s, err := api.GetSecretVersion(ctx(t), path, 1)
	mustOK(t, "secret get --version 1", err)
	wantData(t, "secret get --version 1", s, map[string]string{"username": "admin",
		"password": "one"})
	// spike secret get secrets/cli/db (version flag default 0)
	s, err = api.GetSecretVersion(ctx(t), path, 0)
	mustOK(t, "secret get", err)
	wantData(t, "secret get", s, map[string]string{"username": "admin", "password": "two"})

	// spike secret list
	keys, err := api.ListSecretKeys(ctx(t))
	mustOK(t, "secret list", err)
	if !slices.Contains(*keys, path) {
		t.Fatalf("secret list: %v", *keys)
	}

	// spike secret metadata get secrets/cli/db
	meta, err := api.GetSecretMetadata(ctx(t), path, 0)
	mustOK(t, "secret metadata get", err)
	if meta.Metadata.CurrentVersion != 2 || len(meta.Versions) != 2 {
		t.Fatalf("secret metadata get: %+v", meta)
	}

	// spike secret delete secrets/cli/db -v 1,2
	mustOK(t, "secret delete -v 1,2", api.DeleteSecretVersions(ctx(t), path, []int{1, 2}))
	_, err = api.GetSecretVersion(ctx(t), path, 0)
	mustFail(t, "secret get after delete", err, sdkErrors.ErrAPINotFound)
	// spike secret undelete secrets/cli/db -v 1,2
	mustOK(t, "secret undelete -v 1,2", api.UndeleteSecret(ctx(t), path, []int{1, 2}))
	s, err = api.GetSecretVersion(ctx(t), path, 0)
	mustOK(t, "secret get after undelete", err)
	wantData(t, "secret get after undelete", s, map[string]string{"username": "admin",
		"password": "two"})

	// spike cipher encrypt / decrypt (stream mode: stdin → stdout)
	blob, err := api.CipherEncryptStream(ctx(t), bytes.NewReader([]byte("cli plaintext")))
	mustOK(t, "cipher encrypt", err)
	out, err := api.CipherDecryptStream(ctx(t), bytes.NewReader(blob))
	mustOK(t, "cipher decrypt", err)
	if string(out) != "cli plaintext" {
		t.Fatalf("cipher decrypt: %q", out)
	}
	// spike cipher decrypt --version 1 --nonce B64 --ciphertext B64 (JSON mode)
	out, err = api.CipherDecrypt(ctx(t), 1, blob[1:13], blob[13:], "")
	mustOK(t, "cipher decrypt (JSON)", err)
	if string(out) != "cli plaintext" {
		t.Fatalf("cipher decrypt (JSON): %q", out)
	}

	// spike policy delete cli-web (after the y/N prompt)
	if !findPolicyByName(t, api, name) {
		t.Fatalf("policy delete: %s not listed", name)
	}
	mustOK(t, "policy delete", api.DeletePolicy(ctx(t), name))
	if findPolicyByName(t, api, name) {
		t.Fatalf("policy %s still listed after delete", name)
	}
}
