//! `read_store` against a real SPIKE 0.8.2 store (../shared/fixtures/spike-0.8.2: written by
//! SPIKE's own Go Nexus, with `expected.json` cross-checked through SPIKE's CLI), and against
//! copies of it edited with SQLite: a WAL that holds a newer version, a flipped ciphertext
//! byte, unknown schemas, inconsistent rows.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rusqlite::Connection;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spike_core::crypto::spike_legacy::{MetadataField, field_nonce};
use spike_core::secret::{KeeperShare, RootKey};
use spike_core::shamir;
use spike_import::{ImportError, read_store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/spike-0.8.2");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURE).join(name)
}

fn expected() -> Value {
    serde_json::from_slice(&fs::read(fixture("expected.json")).unwrap()).unwrap()
}

/// Shard `i` from `recover/spike.recovery.<i>.txt` (`spike:<i>:<64 hex>`).
fn shard(i: u8) -> KeeperShare {
    let text = fs::read_to_string(fixture(&format!("recover/spike.recovery.{i}.txt"))).unwrap();
    let mut parts = text.trim().splitn(3, ':');
    assert_eq!(parts.next(), Some("spike"));
    assert_eq!(parts.next(), Some(i.to_string().as_str()));
    let mut value = [0u8; 32];
    hex::decode_to_slice(parts.next().unwrap(), &mut value).unwrap();
    KeeperShare::new(i, &mut value)
}

/// The root key rebuilt from the shards `indices` with SPIKE's threshold, 2.
fn root_key(indices: &[u8]) -> RootKey {
    let shares: Vec<KeeperShare> = indices.iter().map(|&i| shard(i)).collect();
    shamir::combine(&shares, 2).unwrap()
}

fn expected_key_bytes() -> [u8; 32] {
    let mut key = [0u8; 32];
    hex::decode_to_slice(expected()["root_key_hex"].as_str().unwrap(), &mut key).unwrap();
    key
}

fn rfc3339(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(fs::read(path).unwrap()).to_vec()
}

/// A writable copy of the fixture's spike.db in `dir`.
fn copy_fixture(dir: &Path) -> PathBuf {
    let db = dir.join("spike.db");
    fs::write(&db, fs::read(fixture("spike.db")).unwrap()).unwrap();
    db
}

/// Edits a copy of the fixture with `sql`, closing it again (the WAL checkpoints on close).
fn edited_copy(dir: &Path, edit: impl FnOnce(&Connection)) -> PathBuf {
    let db = copy_fixture(dir);
    let conn = Connection::open(&db).unwrap();
    edit(&conn);
    conn.close().unwrap();
    db
}

fn seal(key: &[u8; 32], nonce: &[u8; 12], plain: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into()).encrypt(Nonce::from_slice(nonce), plain).unwrap()
}

#[test]
fn the_shards_rebuild_the_expected_root_key_from_any_two_or_all_three() {
    let want = expected_key_bytes();
    for indices in [&[1, 2][..], &[1, 3], &[2, 3], &[1, 2, 3], &[3, 1]] {
        assert_eq!(root_key(indices).expose_secret(), &want, "shards {indices:?}");
    }
}

#[test]
fn reads_every_secret_and_policy_exactly_as_expected() {
    let exp = expected();
    let store = read_store(&fixture("spike.db"), &root_key(&[1, 2])).unwrap();

    assert_eq!(store.source.db_bytes, fs::metadata(fixture("spike.db")).unwrap().len());
    assert_eq!(store.source.wal_bytes, None);

    let paths: Vec<&str> = store.secrets.iter().map(|s| s.path.as_str()).collect();
    let want_paths: Vec<&str> =
        exp["secret_paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(paths, want_paths);
    let mut sorted = paths.clone();
    sorted.sort_unstable();
    assert_eq!(paths, sorted, "secrets sorted by path");

    let mut versions_seen = 0;
    for secret in &store.secrets {
        let want = &exp["secrets"][&secret.path];
        let path = &secret.path;
        assert_eq!(secret.current_version, want["current_version"].as_u64().unwrap(), "{path}");
        assert_eq!(secret.oldest_version, want["oldest_version"].as_u64().unwrap(), "{path}");
        assert_eq!(u64::from(secret.max_versions), want["max_versions"].as_u64().unwrap());
        assert_eq!(
            secret.created_time.unix_timestamp(),
            want["created_time_unix"].as_i64().unwrap(),
            "{path}"
        );
        assert_eq!(
            secret.updated_time.unix_timestamp(),
            want["updated_time_unix"].as_i64().unwrap(),
            "{path}"
        );
        assert_eq!(secret.created_time, rfc3339(&want["created_time"]));
        assert_eq!(secret.updated_time, rfc3339(&want["updated_time"]));
        assert!(!secret.force && !secret.check);

        let want_versions = want["versions"].as_array().unwrap();
        assert_eq!(secret.versions.len(), want_versions.len(), "{path}: every row, even pruned");
        for (got, want) in secret.versions.iter().zip(want_versions) {
            let v = got.version;
            assert_eq!(v, want["version"].as_u64().unwrap(), "{path}: versions ascending");
            let data: BTreeMap<&str, &str> = got.data.as_ref().unwrap().iter().collect();
            let want_data: BTreeMap<&str, &str> = want["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            assert_eq!(data, want_data, "{path} v{v}");
            assert_eq!(got.deleted_time.is_some(), want["deleted"].as_bool().unwrap());
            assert_eq!(got.created_time, rfc3339(&want["created_time"]), "{path} v{v}");
            assert_eq!(got.created_time.offset(), time::UtcOffset::UTC);
            match &want["deleted_time"] {
                Value::Null => assert_eq!(got.deleted_time, None, "{path} v{v}"),
                t => assert_eq!(got.deleted_time, Some(rfc3339(t)), "{path} v{v}"),
            }
            versions_seen += 1;
        }
    }
    assert_eq!(versions_seen, 26, "the fixture's secrets table has 26 rows");

    // The quirks the fixture was made to hold.
    let by_path = |p: &str| store.secrets.iter().find(|s| s.path == p).unwrap();
    let legacy = by_path("legacy/old-token");
    assert_eq!((legacy.current_version, legacy.oldest_version), (0, 0));
    assert!(legacy.versions.iter().all(|v| v.deleted_time.is_some() && v.data.is_some()));
    let rotation = by_path("ops/rotation-log");
    assert_eq!(
        (rotation.current_version, rotation.oldest_version, rotation.max_versions),
        (12, 3, 10)
    );
    assert_eq!(rotation.versions.len(), 12, "pruned versions 1 and 2 are still there");

    let mut want_policies: Vec<&Value> = exp["policies"].as_array().unwrap().iter().collect();
    want_policies.sort_by_key(|p| p["name"].as_str().unwrap());
    assert_eq!(store.policies.len(), want_policies.len());
    for (got, want) in store.policies.iter().zip(want_policies) {
        assert_eq!(got.name, want["name"].as_str().unwrap());
        assert_eq!(got.spiffeid_pattern, want["spiffiedPattern"].as_str().unwrap());
        assert_eq!(got.path_pattern, want["pathPattern"].as_str().unwrap());
        let perms: Vec<&str> =
            want["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(got.permissions, perms, "{}: order as stored", got.name);
        assert_eq!(got.created_at, rfc3339(&want["createdAt"]));
        assert_eq!(got.updated_at, rfc3339(&want["updatedAt"]));
        assert!(!got.force && !got.check);
    }

    // Debug output never shows a value.
    let debug = format!("{store:?}");
    assert!(!debug.contains("pw-v1-Zx81") && !debug.contains("ak_live_51Hx0001"));
    assert!(debug.contains("tenants/acme/db"));
}

#[test]
fn any_two_shards_read_the_same_store() {
    let a = read_store(&fixture("spike.db"), &root_key(&[1, 3])).unwrap();
    let b = read_store(&fixture("spike.db"), &root_key(&[2, 3])).unwrap();
    let c = read_store(&fixture("spike.db"), &root_key(&[1, 2, 3])).unwrap();
    for other in [&b, &c] {
        assert_eq!(format!("{a:?}"), format!("{other:?}"));
        assert_eq!(a.policies, other.policies);
    }
}

#[test]
fn a_wrong_key_is_refused_as_such_and_returns_nothing() {
    // One shard alone (as if the threshold were 1), and a random key.
    let one_shard = shamir::combine(&[shard(1)], 1).unwrap();
    let random = RootKey::generate().unwrap();
    for key in [one_shard, random] {
        let err = read_store(&fixture("spike.db"), &key).unwrap_err();
        assert!(matches!(err, ImportError::WrongKey { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("the root key rebuilt from the shards does not open"), "{msg}");
        assert!(msg.contains("spike.db") && msg.contains("threshold"), "{msg}");
        assert!(!msg.contains(&hex::encode(key.expose_secret())));
    }
}

#[test]
fn a_flipped_ciphertext_byte_names_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = edited_copy(dir.path(), |conn| {
        let mut data: Vec<u8> = conn
            .query_row(
                "SELECT encrypted_data FROM secrets WHERE path = 'tenants/acme/db' AND version = 3",
                [],
                |r| r.get(0),
            )
            .unwrap();
        data[5] ^= 0x01;
        let n = conn
            .execute(
                "UPDATE secrets SET encrypted_data = ?1 \
                 WHERE path = 'tenants/acme/db' AND version = 3",
                [&data],
            )
            .unwrap();
        assert_eq!(n, 1);
    });
    let err = read_store(&db, &root_key(&[1, 2])).unwrap_err();
    assert!(matches!(err, ImportError::Corrupted { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("secrets row") && msg.contains("\"tenants/acme/db\""), "{msg}");
    assert!(msg.contains("version 3"), "{msg}");
    assert!(!msg.contains("pw-v3-Lr07") && !msg.contains("acme_app"), "{msg}");
}

#[test]
fn a_corrupted_first_row_is_not_mistaken_for_a_wrong_key() {
    // secret_metadata of app/api-key is the first row opened.
    let dir = tempfile::tempdir().unwrap();
    let db = edited_copy(dir.path(), |conn| {
        conn.execute(
            "UPDATE secret_metadata SET encrypted_current_version = \
             zeroblob(length(encrypted_current_version)) WHERE path = 'app/api-key'",
            [],
        )
        .unwrap();
    });
    let err = read_store(&db, &root_key(&[2, 3])).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImportError::Corrupted { .. }), "{err:?}");
    assert!(msg.contains("secret_metadata row") && msg.contains("\"app/api-key\""), "{msg}");
}

#[test]
fn the_users_files_are_never_modified() {
    let db = fixture("spike.db");
    let before = sha256(&db);
    let listing = || {
        let mut names: Vec<_> =
            fs::read_dir(FIXTURE).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    };
    let files = listing();
    read_store(&db, &root_key(&[1, 2])).unwrap();
    read_store(&db, &RootKey::generate().unwrap()).unwrap_err();
    assert_eq!(sha256(&db), before);
    assert_eq!(listing(), files, "no -wal or -shm appeared beside spike.db");
}

/// A live SPIKE Nexus's store: a new version of tenants/acme/db written in WAL mode, and the
/// files copied while the writer still has them open (so the rows are only in spike.db-wal).
#[test]
fn recent_writes_in_the_wal_are_read_and_the_wal_is_left_alone() {
    let key = expected_key_bytes();
    let live = tempfile::tempdir().unwrap();
    let db = copy_fixture(live.path());
    let conn = Connection::open(&db).unwrap();
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");

    let (created, old_updated): (i64, i64) = {
        let (nonce, c, u): (Vec<u8>, Vec<u8>, Vec<u8>) = conn
            .query_row(
                "SELECT nonce, encrypted_created_time, encrypted_updated_time \
                 FROM secret_metadata WHERE path = 'tenants/acme/db'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let open = |field, sealed: &[u8]| {
            let plain = spike_core::crypto::spike_legacy::open(
                &key,
                &field_nonce(&nonce, field).unwrap(),
                sealed,
            )
            .unwrap();
            std::str::from_utf8(&plain).unwrap().parse::<i64>().unwrap()
        };
        (open(MetadataField::CreatedTime, &c), open(MetadataField::UpdatedTime, &u))
    };
    assert_eq!(created, 1_796_646_513);
    let updated = old_updated + 86_400;

    let nonce = *b"wal-test-nce";
    let data = seal(&key, &nonce, br#"{"username":"acme_app","password":"pw-v5-from-wal"}"#);
    conn.execute(
        "INSERT INTO secrets (path, version, nonce, encrypted_data, created_time, deleted_time) \
         VALUES ('tenants/acme/db', 5, ?1, ?2, '2026-12-08 09:00:00.123456789+02:00', NULL)",
        rusqlite::params![&nonce[..], data],
    )
    .unwrap();
    let meta_nonce = *b"meta-nonce-1";
    let field = |f: MetadataField, v: String| {
        seal(&key, &field_nonce(&meta_nonce, f).unwrap(), v.as_bytes())
    };
    conn.execute(
        "UPDATE secret_metadata SET nonce = ?1, encrypted_current_version = ?2, \
         encrypted_oldest_version = ?3, encrypted_created_time = ?4, \
         encrypted_updated_time = ?5, encrypted_max_versions = ?6 \
         WHERE path = 'tenants/acme/db'",
        rusqlite::params![
            &meta_nonce[..],
            field(MetadataField::CurrentVersion, "5".into()),
            field(MetadataField::OldestVersion, "1".into()),
            field(MetadataField::CreatedTime, created.to_string()),
            field(MetadataField::UpdatedTime, updated.to_string()),
            field(MetadataField::MaxVersions, "10".into()),
        ],
    )
    .unwrap();

    // Copy while the writer is still open: nothing has been checkpointed into spike.db.
    let taken = tempfile::tempdir().unwrap();
    let taken_db = taken.path().join("spike.db");
    let taken_wal = taken.path().join("spike.db-wal");
    fs::copy(&db, &taken_db).unwrap();
    fs::copy(live.path().join("spike.db-wal"), &taken_wal).unwrap();
    let main_only = tempfile::tempdir().unwrap();
    fs::copy(&db, main_only.path().join("spike.db")).unwrap();
    drop(conn);
    let wal_len = fs::metadata(&taken_wal).unwrap().len();
    assert!(wal_len > 0, "the new rows are in the WAL");

    let before = (sha256(&taken_db), sha256(&taken_wal));
    let store = read_store(&taken_db, &root_key(&[1, 3])).unwrap();
    assert_eq!((sha256(&taken_db), sha256(&taken_wal)), before, "the user's files are untouched");
    assert!(!taken.path().join("spike.db-shm").exists());
    assert_eq!(store.source.wal_bytes, Some(wal_len));
    assert_eq!(store.source.db_bytes, fs::metadata(&taken_db).unwrap().len());

    let acme = store.secrets.iter().find(|s| s.path == "tenants/acme/db").unwrap();
    assert_eq!((acme.current_version, acme.oldest_version, acme.max_versions), (5, 1, 10));
    assert_eq!(acme.updated_time.unix_timestamp(), updated);
    assert_eq!(acme.versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    let v5 = &acme.versions[4];
    assert_eq!(v5.data.as_ref().unwrap().get("password"), Some("pw-v5-from-wal"));
    assert_eq!(v5.created_time, time::macros::datetime!(2026-12-08 07:00:00.123456789 UTC));
    assert_eq!(v5.deleted_time, None);
    assert_eq!(store.secrets.len(), 8);

    // Without its WAL the same spike.db does not have the new version yet.
    let stale = read_store(&main_only.path().join("spike.db"), &root_key(&[1, 3])).unwrap();
    assert_eq!(stale.source.wal_bytes, None);
    let acme = stale.secrets.iter().find(|s| s.path == "tenants/acme/db").unwrap();
    assert_eq!((acme.current_version, acme.versions.len()), (4, 4));
}

#[test]
fn an_unknown_schema_is_refused() {
    let cases: [(&str, &str, &[&str]); 4] = [
        ("ALTER TABLE policies ADD COLUMN id TEXT", "policies", &["columns", "id"]),
        ("DROP TABLE secret_metadata", "secret_metadata", &["no table"]),
        ("PRAGMA user_version = 1", "user_version", &["1"]),
        (
            "ALTER TABLE secrets RENAME COLUMN deleted_time TO deleted_at",
            "secrets",
            &["deleted_at"],
        ),
    ];
    for (sql, names, also) in cases {
        let dir = tempfile::tempdir().unwrap();
        let db = edited_copy(dir.path(), |conn| conn.execute_batch(sql).unwrap());
        let err = read_store(&db, &root_key(&[1, 2])).unwrap_err();
        assert!(matches!(err, ImportError::Schema { .. }), "{sql}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains("this importer reads SPIKE 0.8.x stores"), "{msg}");
        assert!(msg.contains(names), "{sql}: {msg}");
        for word in also {
            assert!(msg.contains(word), "{sql}: {msg}");
        }
    }
}

#[test]
fn files_that_are_not_stores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = root_key(&[1, 2]);

    let missing = read_store(&dir.path().join("spike.db"), &key).unwrap_err();
    assert!(matches!(missing, ImportError::Read { .. }), "{missing:?}");

    let text = dir.path().join("notes.txt");
    fs::write(&text, vec![b'x'; 8192]).unwrap();
    let err = read_store(&text, &key).unwrap_err();
    assert!(matches!(err, ImportError::Schema { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");

    // Half the pages gone.
    let db = copy_fixture(dir.path());
    let bytes = fs::read(&db).unwrap();
    fs::write(&db, &bytes[..bytes.len() / 2]).unwrap();
    let err = read_store(&db, &key).unwrap_err();
    assert!(matches!(err, ImportError::Damaged { .. }), "{err:?}");
}

#[test]
fn rows_that_disagree_are_refused_by_path() {
    let key = root_key(&[1, 2]);
    let case = |sql: &str| {
        let dir = tempfile::tempdir().unwrap();
        let db = edited_copy(dir.path(), |conn| conn.execute_batch(sql).unwrap());
        read_store(&db, &key).unwrap_err()
    };

    // The current version's row is gone.
    let err = case("DELETE FROM secrets WHERE path = 'certs/tls'");
    assert!(matches!(err, ImportError::Inconsistent { ref path, .. } if path == "certs/tls"));
    assert!(err.to_string().contains("current version is 1"), "{err}");

    // Rows without a metadata row.
    let err = case("DELETE FROM secret_metadata WHERE path = 'flags/empty'");
    assert!(matches!(err, ImportError::Inconsistent { ref path, .. } if path == "flags/empty"));
    assert!(err.to_string().contains("secret_metadata has no row"), "{err}");

    // Version 0.
    let err = case("UPDATE secrets SET version = 0 WHERE path = 'app/api-key' AND version = 2");
    assert!(matches!(err, ImportError::Inconsistent { ref path, .. } if path == "app/api-key"));

    // An unparseable time.
    let err = case("UPDATE secrets SET created_time = 'yesterday' WHERE path = 'certs/tls'");
    assert!(matches!(err, ImportError::Corrupted { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("\"certs/tls\" version 1") && msg.contains("created_time"), "{msg}");
}
