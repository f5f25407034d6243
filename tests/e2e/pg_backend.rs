//! The PostgreSQL backend on its own, against a real server: compare-and-swap under
//! concurrency, prefix scans, the write counter, schema versions, clear connection errors, and
//! TLS with certificate verification.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use spike_core::crypto::Keyring;
use spike_core::error::StoreError;
use spike_core::path::SecretPath;
use spike_core::store::backend::{Backend, Batch, Commit};
use spike_core::store::{PutOptions, SecretStore, keys as store_keys};
use spike_e2e::postgres::PgServer;
use spike_server::postgres::{PgError, PgTls, PostgresBackend, PostgresSettings};

fn settings(dsn: String, tls: PgTls) -> PostgresSettings {
    PostgresSettings { dsn, tls, pool_size: 4, connect_timeout: Duration::from_secs(5) }
}

#[test]
fn compare_and_swap_prefix_scans_and_the_write_counter_hold_on_a_real_server() {
    let pg = PgServer::start().unwrap();
    pg.create_database("kv").unwrap();
    let backend = Arc::new(PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::Disable)).unwrap());
    let (start, _) = backend.rollback_state().unwrap();

    // Eight threads race to create the same absent key: exactly one wins.
    const RACERS: usize = 8;
    let barrier = Arc::new(Barrier::new(RACERS));
    let wins: usize = (0..RACERS)
        .map(|i| {
            let (backend, barrier) = (backend.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let value = format!("racer-{i}");
                backend.compare_and_swap("s/race/m", None, Some(value.as_bytes())).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| usize::from(t.join().unwrap() == Commit::Applied))
        .sum();
    assert_eq!(wins, 1);
    let winner = backend.get("s/race/m").unwrap().unwrap();

    // A stale expectation writes nothing, not even the other keys of its batch.
    let mut batch = Batch::new();
    batch.expect("s/race/m", Some(b"stale")).put("s/race/m", b"x").put("s/other/m", b"y");
    assert_eq!(backend.commit(&batch).unwrap(), Commit::Conflict);
    assert_eq!(backend.get("s/race/m").unwrap().unwrap(), winner);
    assert_eq!(backend.get("s/other/m").unwrap(), None);
    let mut batch = Batch::new();
    batch.expect("s/race/m", Some(&winner)).put("s/race/m", b"next").delete("nothing");
    assert_eq!(backend.commit(&batch).unwrap(), Commit::Applied);

    // Prefix scans: exact prefix, byte order, nothing outside.
    for key in ["s/a/m", "s/a/b/m", "s/ab/m", "s/a\u{e9}/m", "s/b/m", "t/a", "s0"] {
        backend.put(key, key.as_bytes()).unwrap();
    }
    let keys = backend.keys_with_prefix("s/a").unwrap();
    assert_eq!(keys, ["s/a/b/m", "s/a/m", "s/ab/m", "s/a\u{e9}/m"]);
    let scanned = backend.scan_prefix("s/a/").unwrap();
    assert_eq!(
        scanned,
        vec![("s/a/b/m".into(), b"s/a/b/m".to_vec()), ("s/a/m".into(), b"s/a/m".to_vec())]
    );
    assert_eq!(backend.keys_with_prefix("").unwrap().len(), 8);

    // Applied commits advance the counter; conflicts do not.
    let (after, _) = backend.rollback_state().unwrap();
    assert_eq!(after - start, 1 + 1 + 7, "1 race winner, 1 CAS, 7 puts");
}

/// The read a Nexus GET awaits on its request task (issue 15): on a real server, awaited on a
/// runtime that is not the backend's, it answers as the blocking read does, and a secret read
/// through it sees another replica's writes and refuses tampered and moved records. The
/// runtime is single-threaded: a read that blocked on the backend's runtime would panic.
#[test]
fn async_reads_answer_like_blocking_ones_and_secrets_read_through_them_stay_authenticated() {
    let pg = PgServer::start().unwrap();
    pg.create_database("kv").unwrap();
    let open = || Arc::new(PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::Disable)).unwrap());
    let (here, there) = (open(), open());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    there.put("a", b"1").unwrap();
    there.put("b", b"").unwrap();
    let keys = ["a", "missing", "b", "a"];
    let awaited = rt.block_on(here.get_many_async(&keys)).unwrap();
    assert_eq!(awaited, [Some(b"1".to_vec()), None, Some(Vec::new()), Some(b"1".to_vec())]);
    assert_eq!(awaited, here.get_many(&keys).unwrap());
    assert_eq!(rt.block_on(here.get_many_async(&[])).unwrap(), Vec::<Option<Vec<u8>>>::new());

    // Two replicas' stores over the one database.
    let ring = Arc::new(Keyring::generate().unwrap());
    let reader = SecretStore::new(here.clone(), ring.clone());
    let writer = SecretStore::new(there.clone(), ring);
    let path = SecretPath::parse("apps/db").unwrap();
    let get = |version| {
        let read = rt.block_on(reader.get_versioned_async(&path, version));
        read.map(|(v, values)| (v, values.get("k").unwrap_or_default().to_owned()))
    };
    let put = |v: &str| writer.put(&path, &[("k", v)].into_iter().collect(), &PutOptions::new());
    assert!(matches!(get(None), Err(StoreError::NotFound)));
    put("one").unwrap();
    assert_eq!(get(None).unwrap(), (1, "one".into()));
    put("two").unwrap();
    assert_eq!(get(None).unwrap(), (2, "two".into()), "the other replica's write");
    assert_eq!(get(Some(1)).unwrap(), (1, "one".into()));
    writer.delete(&path, &[2]).unwrap();
    assert!(matches!(get(Some(2)), Err(StoreError::Deleted)));
    assert_eq!(get(None).unwrap(), (1, "one".into()));

    // A flipped byte in the row, then version 1's record under version 2's key.
    writer.undelete(&path, &[2]).unwrap();
    assert_eq!(get(None).unwrap(), (2, "two".into()));
    let key = store_keys::version(path.as_str(), 2);
    let mut tampered = there.get(&key).unwrap().unwrap();
    tampered[20] ^= 1;
    there.put(&key, &tampered).unwrap();
    assert!(matches!(get(None), Err(StoreError::Corrupt(_))));
    let first = there.get(&store_keys::version(path.as_str(), 1)).unwrap().unwrap();
    there.put(&key, &first).unwrap();
    assert!(matches!(get(Some(2)), Err(StoreError::Corrupt(_))));
    assert_eq!(get(Some(1)).unwrap(), (1, "one".into()));

    // The server ends every session (a restart, a failover): the shared read connection is
    // replaced; only a read that was sent on the dead one can fail.
    let others = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                  WHERE datname = 'kv' AND pid <> pg_backend_pid()";
    pg.sql("kv", others).unwrap();
    let failures = (0..3).take_while(|_| get(Some(1)).is_err()).count();
    assert!(failures <= 1, "{failures} reads failed after the sessions ended");
    assert_eq!(get(Some(1)).unwrap(), (1, "one".into()));
    assert_eq!(here.get("a").unwrap(), Some(b"1".to_vec()));
}

#[test]
fn a_newer_schema_is_refused_and_connection_errors_are_clear_without_the_password() {
    let pg = PgServer::start().unwrap();
    pg.create_database("kv").unwrap();
    drop(PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::Disable)).unwrap());
    // Reopening an up-to-date schema changes nothing.
    drop(PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::Disable)).unwrap());
    pg.sql("kv", "INSERT INTO spike_schema_migrations (version) VALUES (99)").unwrap();
    let err = PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::Disable)).unwrap_err();
    assert!(matches!(err, PgError::SchemaTooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("upgrade spike-rs"), "{err}");

    let dsn = format!("postgresql://postgres:pw-canary-31@127.0.0.1:{}/absent", pg.port());
    let err = PostgresBackend::open(&settings(dsn, PgTls::Disable)).unwrap_err().to_string();
    assert!(err.contains("127.0.0.1") && err.contains("absent"), "{err}");
    assert!(!err.contains("pw-canary-31"), "{err}");
}

#[test]
fn verify_full_tls_accepts_only_a_server_certificate_from_the_configured_ca() {
    let server =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (server.cert.pem(), server.signing_key.serialize_pem());
    let pg = PgServer::start_with_tls(Some((&cert_pem, &key_pem))).unwrap();
    pg.create_database("kv").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.pem");
    std::fs::write(&good, &cert_pem).unwrap();
    let backend =
        PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::VerifyFull { ca_file: good }))
            .unwrap();
    backend.put("k", b"over tls").unwrap();
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"over tls"[..]));
    let ssl = pg
        .sql("kv", "SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")
        .unwrap();
    assert!(ssl.trim().parse::<u32>().unwrap() >= 1, "no TLS session seen: {ssl}");

    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let err = PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::VerifyFull { ca_file: wrong }))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unavailable"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err =
        PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::VerifyFull { ca_file: missing }))
            .unwrap_err()
            .to_string();
    assert!(err.contains("SPIKE_NEXUS_POSTGRES_CA_FILE"), "{err}");
}

/// A CA certificate named `name` with these basicConstraints.
fn ca_params(name: &str, constraints: rcgen::BasicConstraints) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(constraints);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params
}

#[test]
fn verify_full_tls_honours_the_path_length_of_the_ca_file_root() {
    // Two copies of one root (same name and key): pathlen:0 and pathlen:1. The server presents
    // leaf + intermediate CA, which either copy's key verifies; only the limit differs. Go's
    // crypto/x509 and OpenSSL (so libpq) refuse the chain under pathlen:0; webpki alone would
    // accept it (issue 13).
    let root_key = rcgen::KeyPair::generate().unwrap().serialize_der();
    let key = || rcgen::KeyPair::try_from(root_key.as_slice()).unwrap();
    let root_params = |max| ca_params("pg root", rcgen::BasicConstraints::Constrained(max));
    let strict = root_params(0).self_signed(&key()).unwrap();
    let lenient = root_params(1).self_signed(&key()).unwrap();
    let root = rcgen::Issuer::new(root_params(0), key());
    let int_key = rcgen::KeyPair::generate().unwrap();
    let int_params = ca_params("pg intermediate", rcgen::BasicConstraints::Unconstrained);
    let intermediate = int_params.signed_by(&int_key, &root).unwrap();
    let int = rcgen::Issuer::new(int_params, int_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &int)
        .unwrap();
    // PostgreSQL sends every certificate of ssl_cert_file: leaf first, then its issuer.
    let chain_pem = format!("{}{}", server.pem(), intermediate.pem());
    let pg = PgServer::start_with_tls(Some((&chain_pem, &server_key.serialize_pem()))).unwrap();
    pg.create_database("kv").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let strict_file = dir.path().join("strict.pem");
    std::fs::write(&strict_file, strict.pem()).unwrap();
    let err =
        PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::VerifyFull { ca_file: strict_file }))
            .unwrap_err();
    assert!(matches!(err, PgError::Connect { .. }), "{err}");
    let err = err.to_string();
    for part in ["unavailable", "CN=pg root", "allows at most 0", "pathLenConstraint", "has 1"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }

    let lenient_file = dir.path().join("lenient.pem");
    std::fs::write(&lenient_file, lenient.pem()).unwrap();
    let backend =
        PostgresBackend::open(&settings(pg.dsn("kv"), PgTls::VerifyFull { ca_file: lenient_file }))
            .unwrap();
    backend.put("k", b"over tls via an intermediate").unwrap();
    assert_eq!(backend.get("k").unwrap().as_deref(), Some(&b"over tls via an intermediate"[..]));
}
