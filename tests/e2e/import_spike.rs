//! `spike operator import-spike` (issue 16) end to end: the store SPIKE's own Go Nexus 0.8.2
//! wrote (`../shared/fixtures/spike-0.8.2/`), imported by the real `spike` CLI into a real
//! Nexus with Keepers, on sled and on a real PostgreSQL server, then compared field by field
//! with the fixture's `expected.json` through the SDK and the CLI; SPIKE's cipher ciphertexts
//! (both forms) decrypt; a re-run is a no-op; conflicts, wrong shards and a damaged file are
//! refused with nothing written; no value ever reaches a log or the dry-run output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use spike_client::api::cipher::Ciphertext;
use spike_client::{Error, Spike};
use spike_core::secret::SecretValues;
use spike_e2e::postgres::ReplicaSystem;
use spike_e2e::{Cluster, ClusterSpec};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/spike-0.8.2")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn time_of(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

/// Every secret value and the root key: none may appear in any output or log.
fn canaries(expected: &Value) -> Vec<String> {
    let mut out = vec![expected["root_key_hex"].as_str().unwrap().to_owned()];
    for secret in expected["secrets"].as_object().unwrap().values() {
        for version in secret["versions"].as_array().unwrap() {
            for value in version["data"].as_object().unwrap().values() {
                let value = value.as_str().unwrap();
                // Short or shared strings ("false", "") would match unrelated text.
                if value.len() >= 8 && !value.starts_with("-----BEGIN") {
                    out.push(value.to_owned());
                }
            }
        }
    }
    out
}

fn assert_no_canary(what: &str, text: &str, canaries: &[String]) {
    for canary in canaries {
        assert!(!text.contains(canary.as_str()), "{what} holds a secret value: {canary:?}");
    }
}

/// The `spike` CLI as the Pilot superuser of `cluster`, against `url`.
struct Pilot {
    bin: PathBuf,
    socket: String,
    url: String,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Pilot {
    fn new(cluster: &Cluster, url: &str) -> Self {
        let dir = spike_e2e::build_in_current_target(&["-p", "spike-cli"]).unwrap();
        Self {
            bin: dir.join("spike"),
            socket: cluster.endpoint("pilot-superuser").unwrap(),
            url: url.to_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = Command::new(&self.bin)
            .args(args)
            .env("SPIFFE_ENDPOINT_SOCKET", &self.socket)
            .env("SPIKE_NEXUS_API_URL", &self.url)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn import(&self, db: &Path, shards: &Path, extra: &[&str]) -> Run {
        let mut args = vec!["operator", "import-spike", "--db"];
        let (db, shards) = (db.to_str().unwrap(), shards.to_str().unwrap());
        args.extend([db, "--shards", shards]);
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

fn values_json(values: &SecretValues) -> Value {
    serde_json::from_slice(&values.to_json()).unwrap()
}

/// Compares everything Nexus serves with `expected.json`: every path, every version's values,
/// deleted flag and times, the counters and times of each secret, every policy, and every
/// cipher ciphertext in both forms.
async fn assert_matches_spike(client: &Spike, expected: &Value) {
    let paths: Vec<String> = serde_json::from_value(expected["secret_paths"].clone()).unwrap();
    assert_eq!(client.list_secrets().await.unwrap(), paths);
    for path in &paths {
        let want = &expected["secrets"][path.as_str()];
        if want.get("metadata_cli_error").is_some() {
            // Every version deleted: SPIKE answers "not found" for its metadata, and so do we;
            // each version is there but deleted.
            let meta = client.secret_metadata(path).await;
            assert!(matches!(meta, Err(Error::NotFound)), "{path}: {meta:?}");
            for v in want["versions"].as_array().unwrap() {
                assert!(v["deleted"].as_bool().unwrap());
                let got = client.get_secret_version(path, v["version"].as_u64().unwrap()).await;
                assert!(matches!(got, Err(Error::NotFound)), "{path}: {got:?}");
            }
            assert!(matches!(client.get_secret(path).await, Err(Error::NotFound)));
            continue;
        }
        let meta = client.secret_metadata(path).await.unwrap();
        let m = &meta.metadata;
        assert_eq!(m.current_version, want["current_version"].as_u64().unwrap(), "{path}");
        assert_eq!(m.oldest_version, want["oldest_version"].as_u64().unwrap(), "{path}");
        assert_eq!(m.max_versions, want["max_versions"].as_u64().unwrap(), "{path}");
        assert_eq!(m.created_time, time_of(&want["created_time"]), "{path}");
        assert_eq!(m.updated_time, time_of(&want["updated_time"]), "{path}");
        let served = meta.versions.unwrap();
        let versions = want["versions"].as_array().unwrap();
        assert_eq!(served.len(), versions.len(), "{path}: every stored version");
        for v in versions {
            let n = v["version"].as_u64().unwrap();
            let info = &served[&n];
            assert_eq!(info.created_time, time_of(&v["created_time"]), "{path} v{n}");
            let deleted = v["deleted"].as_bool().unwrap();
            assert_eq!(info.deleted_time.is_some(), deleted, "{path} v{n}");
            if deleted {
                assert_eq!(info.deleted_time.unwrap(), time_of(&v["deleted_time"]));
                let got = client.get_secret_version(path, n).await;
                assert!(matches!(got, Err(Error::NotFound)), "{path} v{n} is deleted: {got:?}");
            } else {
                let got = client.get_secret_version(path, n).await.unwrap();
                assert_eq!(values_json(&got), v["data"], "{path} v{n}");
            }
        }
        let current = want["current_version"].as_u64().unwrap();
        match client.get_secret(path).await {
            Ok(values) => {
                let v = versions.iter().find(|v| v["version"] == current).unwrap();
                assert_eq!(values_json(&values), v["data"], "{path} current");
            }
            Err(Error::NotFound) => assert_eq!(current, 0, "{path}"),
            Err(e) => panic!("{path}: {e}"),
        }
    }
    for want in expected["policies"].as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let got = client.get_policy(name).await.unwrap();
        assert_eq!(got.spiffeid_pattern, want["spiffiedPattern"].as_str().unwrap());
        assert_eq!(got.path_pattern, want["pathPattern"].as_str().unwrap());
        let got_perms: BTreeSet<String> = serde_json::from_value(
            serde_json::to_value(got.permissions.unwrap_or_default()).unwrap(),
        )
        .unwrap();
        let want_perms: BTreeSet<String> =
            serde_json::from_value(want["permissions"].clone()).unwrap();
        assert_eq!(got_perms, want_perms, "{name}");
        assert_eq!(got.created_at, time_of(&want["createdAt"]), "{name}");
        assert_eq!(got.updated_at, time_of(&want["updatedAt"]), "{name}");
    }
    assert_spike_ciphertexts_open(client, expected).await;
}

async fn assert_spike_ciphertexts_open(client: &Spike, expected: &Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for c in expected["cipher"].as_array().unwrap() {
        let plain = b64.decode(c["plaintext_b64"].as_str().unwrap()).unwrap();
        let stream = std::fs::read(fixture().join(c["stream"]["file"].as_str().unwrap())).unwrap();
        assert_eq!(&client.decrypt_bytes(&stream).await.unwrap()[..], &plain[..]);
        let json: Value = serde_json::from_slice(
            &std::fs::read(fixture().join(c["json"]["file"].as_str().unwrap())).unwrap(),
        )
        .unwrap();
        let ct = Ciphertext {
            version: json["version"].as_u64().unwrap() as u8,
            nonce: b64.decode(json["nonce"].as_str().unwrap()).unwrap(),
            ciphertext: b64.decode(json["ciphertext"].as_str().unwrap()).unwrap(),
        };
        assert_eq!(&client.decrypt(&ct).await.unwrap()[..], &plain[..]);
    }
    // New encryptions are ours and still open.
    let ours = client.encrypt(b"new payload").await.unwrap();
    assert_eq!(&client.decrypt(&ours).await.unwrap()[..], b"new payload");
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Refusals that must leave the store empty: a single shard (below SPIKE's threshold), and a
/// store with a damaged row.
fn refused_before_anything_is_written(pilot: &Pilot) {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one-shard");
    std::fs::create_dir(&one).unwrap();
    std::fs::copy(fixture().join("recover/spike.recovery.2.txt"), one.join("spike.recovery.2.txt"))
        .unwrap();
    let r = pilot.import(&fixture().join("spike.db"), &one, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("does not open") && r.stderr.contains("threshold"), "{}", r.stderr);

    // One byte of one secret version's ciphertext flipped, in a copy.
    let bad = tmp.path().join("spike.db");
    std::fs::copy(fixture().join("spike.db"), &bad).unwrap();
    assert!(rusqlite_flip(&bad), "the copy has the row to damage");
    let r = pilot.import(&bad, &fixture().join("recover"), &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("tenants/acme/db") && r.stderr.contains("version 3"), "{}", r.stderr);
}

/// Flips one byte of `tenants/acme/db` version 3's ciphertext in the SQLite file at `db`;
/// true if that row was found.
fn rusqlite_flip(db: &Path) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    let select =
        "SELECT encrypted_data FROM secrets WHERE path = 'tenants/acme/db' AND version = 3";
    let Ok(mut blob) = conn.query_row(select, [], |row| row.get::<_, Vec<u8>>(0)) else {
        return false;
    };
    blob[4] ^= 0x01;
    let update =
        "UPDATE secrets SET encrypted_data = ?1 WHERE path = 'tenants/acme/db' AND version = 3";
    conn.execute(update, [blob]).unwrap() == 1
}

/// The whole import flow against one Nexus (`client` and `pilot` point at it).
async fn import_flow(client: &Spike, pilot: &Pilot, logs: impl Fn() -> String) {
    let expected = expected();
    let canaries = canaries(&expected);
    let (db, shards) = (fixture().join("spike.db"), fixture().join("recover"));
    let before = sha(&db);

    refused_before_anything_is_written(pilot);
    assert!(client.list_secrets().await.unwrap().is_empty(), "a refused import wrote nothing");

    // Dry run: every path, version count and policy; no value; nothing written.
    let dry = pilot.import(&db, &shards, &["--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    for path in expected["secret_paths"].as_array().unwrap() {
        assert!(dry.stdout.contains(path.as_str().unwrap()), "{}", dry.stdout);
    }
    assert!(dry.stdout.contains("12 versions (0 deleted), current 12"), "{}", dry.stdout);
    assert!(dry.stdout.contains("tenant-acme-readonly"), "{}", dry.stdout);
    assert_no_canary("the dry run", &format!("{}{}", dry.stdout, dry.stderr), &canaries);
    assert!(client.list_secrets().await.unwrap().is_empty(), "a dry run writes nothing");

    // The import, then everything compared with what SPIKE served.
    let run = pilot.import(&db, &shards, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Secrets: 8 (8 created"), "{}", run.stdout);
    assert!(run.stdout.contains("26 versions"), "{}", run.stdout);
    assert!(run.stdout.contains("Policies: 3 (3 created"), "{}", run.stdout);
    assert_matches_spike(client, &expected).await;

    // Through the CLI too.
    let cli = pilot.run(&["secret", "get", "tenants/acme/db", "-v", "1", "--format", "json"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let want = &expected["secrets"]["tenants/acme/db"]["versions"][0]["data"];
    assert_eq!(&serde_json::from_str::<Value>(&cli.stdout).unwrap(), want);
    let cli = pilot.run(&["policy", "get", "ci-deployer", "--format", "json"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let got: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(got["updatedAt"], expected["policies"][0]["updatedAt"]);
    let stream = fixture().join("cipher/stream-3.bin");
    let cli = pilot.run(&["cipher", "decrypt", "-f", stream.to_str().unwrap()]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    assert_eq!(cli.stdout, "line one\nline two\n");

    // A re-run writes nothing.
    let again = pilot.import(&db, &shards, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("Secrets: 8 (0 created, 0 replaced, 8 unchanged)"),
        "{}",
        again.stdout
    );

    // A path changed here and a policy removed: without --force the whole import is refused
    // and the policy is not re-created; with --force both are back to SPIKE's.
    client
        .put_secret("app/api-key", [("value", "changed-here-1")].into_iter().collect())
        .await
        .unwrap();
    client.delete_policy("ci-deployer").await.unwrap();
    let refused = pilot.import(&db, &shards, &[]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("app/api-key") && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert!(matches!(client.get_policy("ci-deployer").await, Err(Error::NotFound)));
    let forced = pilot.import(&db, &shards, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(forced.stdout.contains("1 replaced"), "{}", forced.stdout);
    assert_matches_spike(client, &expected).await;

    // The legacy key: status, then retired; SPIKE ciphertexts stop opening, ours do not.
    let status = pilot.run(&["operator", "legacy-cipher-key"]);
    assert!(status.stdout.contains("is stored"), "{}", status.stdout);
    let retire = pilot.run(&["operator", "legacy-cipher-key", "--retire"]);
    assert_eq!(retire.code, 0, "{}", retire.stderr);
    let stream1 = std::fs::read(fixture().join("cipher/stream-1.bin")).unwrap();
    assert!(client.decrypt_bytes(&stream1).await.is_err());
    let file = fixture().join("cipher/stream-1.bin");
    let cli = pilot.run(&["cipher", "decrypt", "-f", file.to_str().unwrap()]);
    assert_eq!(cli.code, 2, "{}", cli.stderr);
    assert!(
        cli.stderr.contains("could not decrypt") && cli.stderr.contains("retired"),
        "{}",
        cli.stderr
    );
    let ours = client.encrypt(b"x").await.unwrap();
    assert_eq!(&client.decrypt(&ours).await.unwrap()[..], b"x");

    assert_eq!(sha(&db), before, "SPIKE's file is never modified");
    for out in [&run, &again, &refused, &forced] {
        assert_no_canary("the CLI output", &format!("{}{}", out.stdout, out.stderr), &canaries);
    }
    assert_no_canary("Nexus's log", &logs(), &canaries);
}

fn spec() -> ClusterSpec {
    ClusterSpec { log_level: "debug".into(), ..ClusterSpec::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spikes_store_imports_into_sled_with_every_version_policy_and_ciphertext() {
    let mut cluster = Cluster::new(spec()).await.unwrap();
    cluster.start_bootstrapped(Duration::from_secs(60)).await.unwrap();
    let client = cluster.client("pilot-superuser").await.unwrap();
    let pilot = Pilot::new(&cluster, &cluster.nexus_url());
    import_flow(&client, &pilot, || cluster.nexus_log()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spikes_store_imports_into_postgres_with_every_version_policy_and_ciphertext() {
    let sys = ReplicaSystem::start(spec(), 1).await.unwrap();
    let replica = &sys.replicas[0];
    let client = replica.client(&sys.cluster, "pilot-superuser").await.unwrap();
    let pilot = Pilot::new(&sys.cluster, &replica.url);
    let log = replica.proc.log().to_path_buf();
    import_flow(&client, &pilot, || std::fs::read_to_string(&log).unwrap_or_default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_too_large_for_one_request_is_named_and_nothing_is_written() {
    let spec = ClusterSpec {
        nexus_env: [("SPIKE_NEXUS_MAX_BODY_BYTES".to_owned(), "1024".to_owned())]
            .into_iter()
            .collect(),
        ..spec()
    };
    let mut cluster = Cluster::new(spec).await.unwrap();
    cluster.start_bootstrapped(Duration::from_secs(60)).await.unwrap();
    let client = cluster.client("pilot-superuser").await.unwrap();
    let pilot = Pilot::new(&cluster, &cluster.nexus_url());
    let r = pilot.import(&fixture().join("spike.db"), &fixture().join("recover"), &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("ops/rotation-log") && r.stderr.contains("SPIKE_NEXUS_MAX_BODY_BYTES"),
        "{}",
        r.stderr
    );
    assert!(client.list_secrets().await.unwrap().is_empty(), "nothing was written");
    assert!(client.list_policies(None, None).await.unwrap().is_empty(), "nothing was written");
}
