//! SPIKE's identity semantics over real mTLS handshakes on 127.0.0.1 (issue 14, DESIGN.md
//! "Identities"): every role is its base ID or an ID below it on a `/` boundary (Nexus, Keeper
//! and the clients' server pinning included); a lite workload gets the cipher but never the
//! store, whatever a policy says; workloads of a federated trust domain reach Nexus and only
//! policies decide; a process handed several SVIDs by the Workload API picks the right one.

mod support;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use spiffe::{TrustDomain, X509Bundle, X509BundleSet, X509Svid};
use spike_client::identity::{Identity, IdentitySource, SvidChoice};
use spike_client::{Error, RetryPolicy, Spike};
use spike_core::identity::Role;
use spike_core::policy::Permission;
use spike_core::secret::SecretValues;
use spike_core::shamir;
use spike_server::dev::agent::{DevAgent, RegistrationEntry, Selector};
use spike_server::keeper::{self, KeeperClient, KeeperConfig, KeeperError};
use spike_server::nexus::authz::TrustRoots;
use spike_server::nexus::{self, NexusConfig, NexusState, RunningNexus, router};

const NEXUS_POD: &str = "spiffe://spike.ist/spike/nexus/nexus-0";
const SUPERUSER_ALICE: &str = "spiffe://spike.ist/spike/pilot/role/superuser/alice";
const LITE_APP: &str = "spiffe://spike.ist/spike/workload/role/lite/app";
const APP: &str = "spiffe://spike.ist/workload/app";
const PARTNER_APP: &str = "spiffe://partner.org/workload/billing";

// ---------------------------------------------------------------- test PKI (rcgen)

struct Ca {
    trust_domain: &'static str,
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca(trust_domain: &'static str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, format!("test CA {trust_domain}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let der = params.self_signed(&key).unwrap().der().clone();
    Ca { trust_domain, issuer: Issuer::new(params, key), der }
}

/// An in-memory identity: an SVID for `spiffe_id` from `issuer`, trusting every CA of `trusts`
/// (each its own trust domain's bundle, as the Workload API hands out federated bundles).
fn identity(issuer: &Ca, spiffe_id: &str, trusts: &[&Ca]) -> IdentitySource {
    let key = KeyPair::generate().unwrap();
    let params = support::leaf_svid_params(spiffe_id);
    let cert = params.signed_by(&key, &issuer.issuer).unwrap();
    let svid = X509Svid::parse_from_der(cert.der(), &key.serialize_der()).unwrap();
    let mut bundles = X509BundleSet::new();
    for ca in trusts {
        let td = TrustDomain::new(ca.trust_domain).unwrap();
        bundles.add_bundle(X509Bundle::from_x509_authorities(td, &[ca.der.as_ref()]).unwrap());
    }
    IdentitySource::in_memory(Identity::new(Arc::new(svid), Arc::new(bundles)).unwrap())
}

fn values(pairs: &[(&str, &str)]) -> SecretValues {
    pairs.iter().copied().collect()
}

async fn start_nexus(source: IdentitySource) -> (RunningNexus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let nexus = nexus::start(NexusConfig::dev(dir.path().join("nexus")), source).await.unwrap();
    (nexus, dir)
}

/// A client of `nexus` as `source`, expecting Nexus's base ID (so, SPIKE's rule, any Nexus
/// below it).
async fn client(nexus: &RunningNexus, source: IdentitySource) -> Result<Spike, Error> {
    let spike = Spike::builder()
        .identity(source)
        .url(format!("https://{}", nexus.addr()))
        .nexus_id(Role::Nexus.spiffe_id("spike.ist"))
        .retry(RetryPolicy { attempts: 1, ..RetryPolicy::default() })
        .connect_timeout(Duration::from_secs(5))
        .build()
        .await?;
    // Building does not connect; one cheap call proves the handshake.
    match spike.list_secrets().await {
        Err(e @ (Error::NexusUnreachable { .. } | Error::PeerRejected(_))) => Err(e),
        _ => Ok(spike),
    }
}

// ---------------------------------------------------------------- roles below their base

#[tokio::test]
async fn pod_suffixed_nexus_and_superuser_ids_are_their_roles_over_mtls() {
    let spike = ca("spike.ist");
    let (nexus, _dir) = start_nexus(identity(&spike, NEXUS_POD, &[&spike])).await;

    // A client pinning Nexus's base ID accepts `.../spike/nexus/nexus-0`.
    let alice = client(&nexus, identity(&spike, SUPERUSER_ALICE, &[&spike])).await.unwrap();
    alice.put_secret("app/db", values(&[("pass", "s3cret")])).await.unwrap();
    assert_eq!(alice.get_secret("app/db").await.unwrap().get("pass"), Some("s3cret"));

    // ... but not a server whose ID only shares a string prefix with Nexus's.
    let lookalike = ca("spike.ist");
    let (impostor, _dir2) =
        start_nexus(identity(&lookalike, "spiffe://spike.ist/spike/nexusx", &[&lookalike])).await;
    let err = client(&impostor, identity(&lookalike, SUPERUSER_ALICE, &[&lookalike]))
        .await
        .expect_err("a client must refuse .../spike/nexusx as Nexus");
    assert!(err.to_string().contains("spike/nexusx"), "{err}");

    // `.../superuser-evil` is a workload, not a superuser.
    let evil = "spiffe://spike.ist/spike/pilot/role/superuser-evil";
    let evil = client(&nexus, identity(&spike, evil, &[&spike])).await.unwrap();
    assert!(matches!(evil.get_secret("app/db").await, Err(Error::Forbidden)));
    nexus.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test]
async fn keeper_accepts_nexus_and_bootstrap_below_their_base_ids_and_nothing_else() {
    let spike = ca("spike.ist");
    let keeper_id = "spiffe://spike.ist/spike/keeper/keeper-0";
    let running =
        keeper::start(KeeperConfig::dev(), identity(&spike, keeper_id, &[&spike])).await.unwrap();
    let url = format!("https://{}", running.addr());
    let shares = shamir::split(&shamir::generate_root_key().unwrap(), 2, 3).unwrap();
    let keepers = || keeper::keeper_matchers(&TrustRoots::single("spike.ist")).unwrap();
    let as_caller = |id: &str| {
        KeeperClient::new(identity(&spike, id, &[&spike]), keepers(), Duration::from_secs(5))
            .unwrap()
    };

    // Nexus and Bootstrap with pod-suffixed IDs get through the handshake and may contribute;
    // the Nexus side also accepted the Keeper's `.../keeper/keeper-0`.
    as_caller(NEXUS_POD).contribute(&url, &shares[0]).await.unwrap();
    as_caller("spiffe://spike.ist/spike/bootstrap/job-1")
        .contribute(&url, &shares[1])
        .await
        .unwrap();
    assert!(!running.state().shard.is_empty());

    // Look-alikes and other roles are refused at the handshake.
    for id in ["spiffe://spike.ist/spike/nexusx", "spiffe://spike.ist/spike/bootstrapper", APP] {
        let err = as_caller(id).contribute(&url, &shares[2]).await.unwrap_err();
        assert!(matches!(err, KeeperError::Unreachable { .. }), "{id}: {err}");
    }
    running.shutdown().await;
}

// ---------------------------------------------------------------- lite workloads

/// Policies that grant `who` everything on every path, the system paths included.
async fn grant_everything(pilot: &Spike, name: &str, who: &str) {
    let pattern = format!("^{}$", who.replace('.', r"\."));
    let all = [Permission::Super, Permission::Read, Permission::Write, Permission::List];
    pilot.create_policy(name, &pattern, ".*", &all).await.unwrap();
    let exec = [Permission::Execute];
    pilot.create_policy(&format!("{name}-exec"), &pattern, ".*", &exec).await.unwrap();
}

#[tokio::test]
async fn lite_workload_is_refused_the_store_whatever_a_policy_grants_but_gets_the_cipher() {
    let spike = ca("spike.ist");
    let (nexus, _dir) = start_nexus(identity(&spike, NEXUS_POD, &[&spike])).await;
    let pilot = client(&nexus, identity(&spike, SUPERUSER_ALICE, &[&spike])).await.unwrap();
    pilot.put_secret("app/db", values(&[("pass", "s3cret")])).await.unwrap();
    grant_everything(&pilot, "lite-everything", LITE_APP).await;
    grant_everything(&pilot, "app-everything", APP).await;

    let lite = client(&nexus, identity(&spike, LITE_APP, &[&spike])).await.unwrap();
    let forbidden = |what: &str, r: Result<(), Error>| {
        assert!(matches!(r, Err(Error::Forbidden)), "lite {what}: {r:?}");
    };
    forbidden("get", lite.get_secret("app/db").await.map(drop));
    forbidden("put", lite.put_secret("app/new", values(&[("k", "v")])).await);
    forbidden("list", lite.list_secrets().await.map(drop));
    forbidden("metadata", lite.secret_metadata("app/db").await.map(drop));
    forbidden("delete", lite.delete_secret("app/db", &[1]).await);
    forbidden("policy create", lite.create_policy("x", ".*", ".*", &[Permission::Read]).await);
    forbidden("policy get", lite.get_policy("lite-everything").await.map(drop));
    forbidden("policy list", lite.list_policies(None, None).await.map(drop));
    forbidden("policy delete", lite.delete_policy("lite-everything").await);
    assert_eq!(pilot.get_secret("app/db").await.unwrap().get("pass"), Some("s3cret"));
    assert!(matches!(pilot.get_secret("app/new").await, Err(Error::NotFound)));

    // The cipher needs no policy for a lite workload.
    let sealed = lite.encrypt(b"hello").await.unwrap();
    assert_eq!(lite.decrypt(&sealed).await.unwrap().as_slice(), b"hello");
    let framed = lite.encrypt_bytes(b"bytes").await.unwrap();
    assert_eq!(lite.decrypt_bytes(&framed).await.unwrap().as_slice(), b"bytes");

    // The control: the same policies do grant an ordinary workload.
    let app = client(&nexus, identity(&spike, APP, &[&spike])).await.unwrap();
    assert_eq!(app.get_secret("app/db").await.unwrap().get("pass"), Some("s3cret"));
    nexus.shutdown().await;
}

async fn route(state: &Arc<NexusState>, caller: &str, uri: &str, body: &str) -> (u16, String) {
    let (status, body) = support::post_as(router(state.clone()), caller, uri, body).await;
    (status.as_u16(), body)
}

#[tokio::test]
async fn lite_workload_gets_spikes_401_on_every_secret_and_policy_route() {
    let dir = tempfile::tempdir().unwrap();
    let state = NexusState::open(NexusConfig::dev(dir.path().to_path_buf())).unwrap();
    let su = "spiffe://spike.ist/spike/pilot/role/superuser";
    let put = r#"{"path":"app/db","values":{"k":"v"}}"#;
    assert_eq!(route(&state, su, "/v1/store/secrets", put).await.0, 200);
    let pattern = LITE_APP.replace('.', r"\\.");
    for (name, perms) in
        [("lite-all", r#"["super","read","write","list"]"#), ("x", r#"["execute"]"#)]
    {
        let policy = format!(
            r#"{{"name":"{name}","spiffeidPattern":"^{pattern}$","pathPattern":".*","permissions":{perms}}}"#
        );
        assert_eq!(route(&state, su, "/v1/acl/policy", &policy).await.0, 200, "{name}");
    }
    for (uri, body) in [
        ("/v1/store/secrets", put),
        ("/v1/store/secrets?action=list", "{}"),
        ("/v1/store/secrets?action=delete", r#"{"path":"app/db","versions":[]}"#),
        (
            "/v1/acl/policy",
            r#"{"name":"p","spiffeidPattern":".*","pathPattern":".*","permissions":["read"]}"#,
        ),
        ("/v1/acl/policy?action=list", "{}"),
        ("/v1/acl/policy?action=delete", r#"{"id":"lite-all"}"#),
    ] {
        let (status, body) = route(&state, LITE_APP, uri, body).await;
        assert_eq!(status, 401, "{uri}: {body}");
        assert!(body.contains(r#""access_unauthorized""#), "{uri}: {body}");
    }
    let (status, body) =
        route(&state, LITE_APP, "/v1/store/secrets?action=get", r#"{"path":"app/db"}"#).await;
    assert_eq!((status, body.as_str()), (401, r#"{"data":null,"err":"access_unauthorized"}"#));
    let (status, body) =
        route(&state, LITE_APP, "/v1/cipher/encrypt", r#"{"plaintext":"aGVsbG8="}"#).await;
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------- federation

#[tokio::test]
async fn federated_workload_reaches_nexus_and_only_its_policy_decides() {
    let spike = ca("spike.ist");
    let partner = ca("partner.org");
    let stranger = ca("stranger.org");
    // Nexus's Workload API hands out partner.org's bundle beside its own.
    let (nexus, _dir) = start_nexus(identity(&spike, NEXUS_POD, &[&spike, &partner])).await;
    let pilot = client(&nexus, identity(&spike, SUPERUSER_ALICE, &[&spike])).await.unwrap();
    pilot.put_secret("shared/rates", values(&[("eur", "1.08")])).await.unwrap();
    pilot.put_secret("private/keys", values(&[("k", "v")])).await.unwrap();

    let billing = client(&nexus, identity(&partner, PARTNER_APP, &[&partner, &spike]))
        .await
        .expect("a federated workload completes the handshake");
    // Default deny until a policy names it.
    assert!(matches!(billing.get_secret("shared/rates").await, Err(Error::Forbidden)));
    let pattern = format!("^{}$", PARTNER_APP.replace('.', r"\."));
    pilot
        .create_policy("partner-read", &pattern, "^shared/.*$", &[Permission::Read])
        .await
        .unwrap();
    let read = billing.get_secret("shared/rates").await.unwrap();
    assert_eq!(read.get("eur"), Some("1.08"));
    assert!(matches!(billing.get_secret("private/keys").await, Err(Error::Forbidden)));

    // Roles match only in their configured trust domains: partner.org's "superuser" is a
    // workload with no policy.
    let fake_su = "spiffe://partner.org/spike/pilot/role/superuser";
    let fake_su = client(&nexus, identity(&partner, fake_su, &[&partner, &spike])).await.unwrap();
    assert!(matches!(fake_su.get_secret("private/keys").await, Err(Error::Forbidden)));
    let grab = fake_su.create_policy("grab", ".*", ".*", &[Permission::Super]).await;
    assert!(matches!(grab, Err(Error::Forbidden)), "{grab:?}");

    // A trust domain Nexus holds no bundle for is refused at the handshake.
    let outsider = identity(&stranger, "spiffe://stranger.org/app", &[&stranger, &spike]);
    assert!(client(&nexus, outsider).await.is_err());
    nexus.shutdown().await;
}

// ---------------------------------------------------------------- SVID picking

#[tokio::test]
async fn a_process_handed_several_svids_picks_its_role_or_the_id_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let uid = std::fs::metadata(dir.path()).unwrap().uid();
    let entry = |name: &str, id: &str| {
        RegistrationEntry::new(name, id).unwrap().with_selector(Selector::UnixUid(uid))
    };
    // Two entries match this process, the workload one first: SPIRE returns both.
    let agent = DevAgent::builder()
        .socket_dir(dir.path().join("s"))
        .default_entries(false)
        .entries([entry("app", APP), entry("nexus", NEXUS_POD)])
        .build()
        .unwrap()
        .serve()
        .await
        .unwrap();
    let endpoint = agent.shared_endpoint();
    let wait = Duration::from_secs(5);
    let picked = |choice| IdentitySource::workload_api_choosing(&endpoint, wait, choice);
    let id_of = |source: &IdentitySource| source.current().unwrap().spiffe_id().to_string();

    assert_eq!(id_of(&picked(SvidChoice::First).await.unwrap()), APP);
    let nexus = TrustRoots::single("spike.ist").svid_choice(Role::Nexus);
    assert_eq!(id_of(&picked(nexus).await.unwrap()), NEXUS_POD);
    // No SVID holds the Keeper role: the first, with a warning.
    let keeper = TrustRoots::single("spike.ist").svid_choice(Role::Keeper);
    assert_eq!(id_of(&picked(keeper).await.unwrap()), APP);
    let named = SvidChoice::Id(NEXUS_POD.parse().unwrap());
    assert_eq!(id_of(&picked(named).await.unwrap()), NEXUS_POD);

    // A named ID the Workload API does not offer is an error naming what it did offer.
    let missing = SvidChoice::Id("spiffe://spike.ist/not/registered".parse().unwrap());
    let short = IdentitySource::workload_api_choosing(&endpoint, Duration::from_secs(1), missing);
    let err = short.await.unwrap_err().to_string();
    assert!(err.contains("not/registered") && err.contains(APP), "{err}");

    // The SDK's builder names the SVID the same way.
    let spike = Spike::builder()
        .socket(endpoint.clone())
        .svid_id(NEXUS_POD)
        .url("https://127.0.0.1:1")
        .build()
        .await
        .unwrap();
    assert_eq!(id_of(spike.identity()), NEXUS_POD);
    agent.shutdown().await;
}
