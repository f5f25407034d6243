//! `spike operator import-spike` and `spike operator legacy-cipher-key`: moving from SPIKE.
//!
//! The import runs in three steps, so that a problem anywhere means nothing is written:
//! 1. read: rebuild SPIKE's root key from the recovery shard files and decrypt the whole
//!    SQLite store locally (`spike-import`); a wrong shard, a damaged row or an unknown schema
//!    stops here;
//! 2. check: send every secret, policy and the cipher key with `check` set; Nexus validates
//!    each and says what it would do; any refusal, or an existing target with other content
//!    without `--force`, stops here (`--dry-run` stops here too, after printing the plan);
//! 3. write: send them again for real, each path atomically. A re-run skips what is already
//!    there ("unchanged"), so an import cut short (network, Nexus restart) is finished by
//!    running the same command again.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use spike_client::{Error as ClientError, Spike, recovery};
use spike_core::shamir;
use spike_core::wire::SecretBytes;
use spike_core::wire::import::{ImportCipherKeyRequest, ImportOutcome};
use spike_import::SpikeStore;

use super::client;
use crate::cli::Connection;
use crate::exit::CliError;
use crate::output;

/// What the import of one kind of item did, counted by outcome.
#[derive(Debug, Default)]
struct Tally {
    created: usize,
    replaced: usize,
    unchanged: usize,
    conflict: usize,
}

impl Tally {
    fn add(&mut self, outcome: ImportOutcome) {
        match outcome {
            ImportOutcome::Created => self.created += 1,
            ImportOutcome::Replaced => self.replaced += 1,
            ImportOutcome::Unchanged | ImportOutcome::Retired => self.unchanged += 1,
            ImportOutcome::Conflict => self.conflict += 1,
        }
    }

    fn describe(&self, verb_future: bool) -> String {
        let (c, r) =
            if verb_future { ("to create", "to replace") } else { ("created", "replaced") };
        format!("{} {c}, {} {r}, {} unchanged", self.created, self.replaced, self.unchanged)
    }
}

/// A progress line on standard error, only when it is a terminal.
struct Progress {
    total: usize,
    done: usize,
    on: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self { total, done: 0, on: std::io::stderr().is_terminal() && total > 0 }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        if !self.on {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(WIDTH - filled));
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{what} [{bar}] {}/{}", self.done, self.total);
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// `spike operator import-spike --db PATH --shards DIR [--dry-run] [--force]`.
pub async fn import_spike(
    conn: &Connection,
    db: &Path,
    shards: &Path,
    dry_run: bool,
    force: bool,
) -> Result<(), CliError> {
    let started = Instant::now();
    let shares = recovery::read_shards(shards)?;
    let root = shamir::combine(&shares, shares.len()).map_err(|e| {
        CliError::Usage(format!(
            "the shard files in {} do not combine into a key ({e}); use the files SPIKE's \
             `spike operator recover` wrote",
            shards.display()
        ))
    })?;
    let mut store = spike_import::read_store(db, &root)
        .map_err(|e| CliError::Usage(spike_core::error::chain(&e)))?;
    let spike = client(conn).await?;

    // Check everything before writing anything.
    let mut refusals = Vec::new();
    let mut plan = Vec::new();
    let total = store.secrets.len() + store.policies.len() + 1;
    let mut progress = Progress::new(total);
    let mut secrets_plan = Tally::default();
    for secret in &mut store.secrets {
        secret.force = force;
        secret.check = true;
        progress.step("Checking");
        match spike.import_secret(secret).await {
            Ok(outcome) => {
                secrets_plan.add(outcome);
                plan.push(format!(
                    "  secret  {:<40} {:>3} versions ({} deleted), current {}: {}",
                    secret.path,
                    secret.versions.len(),
                    secret.versions.iter().filter(|v| v.deleted_time.is_some()).count(),
                    secret.current_version,
                    planned(outcome)
                ));
                if outcome == ImportOutcome::Conflict {
                    refusals.push(format!("secret {:?} exists with other content", secret.path));
                }
            }
            Err(ClientError::ImportRefused { reason, .. }) => refusals.push(reason),
            Err(ClientError::BadRequest(why)) if why.contains("too large") => {
                refusals.push(format!(
                    "secret {:?} with its {} versions is larger than Nexus accepts in one \
                     request; raise SPIKE_NEXUS_MAX_BODY_BYTES on Nexus for the import",
                    secret.path,
                    secret.versions.len()
                ));
            }
            Err(e) => return Err(interrupted(e, false)),
        }
    }
    let mut policies_plan = Tally::default();
    for policy in &mut store.policies {
        policy.force = force;
        policy.check = true;
        progress.step("Checking");
        match spike.import_policy(policy).await {
            Ok(outcome) => {
                policies_plan.add(outcome);
                plan.push(format!(
                    "  policy  {:<40} {} on {} for {}: {}",
                    policy.name,
                    policy.permissions.join(","),
                    policy.path_pattern,
                    policy.spiffeid_pattern,
                    planned(outcome)
                ));
                if outcome == ImportOutcome::Conflict {
                    refusals.push(format!("policy {:?} exists with other content", policy.name));
                }
            }
            Err(ClientError::ImportRefused { reason, .. }) => refusals.push(reason),
            Err(e) => return Err(interrupted(e, false)),
        }
    }
    let mut key_request = ImportCipherKeyRequest {
        key: Some(SecretBytes::from_slice(root.expose_secret())),
        force,
        check: true,
        ..Default::default()
    };
    progress.step("Checking");
    let (key_plan, _) = match spike.import_cipher_key(&key_request).await {
        Ok(answer) => answer,
        Err(ClientError::ImportRefused { reason, .. }) => {
            refusals.push(reason);
            (ImportOutcome::Conflict, 0)
        }
        Err(e) => return Err(interrupted(e, false)),
    };
    if key_plan == ImportOutcome::Conflict {
        refusals.push(
            "another legacy cipher key is stored (an earlier import of another SPIKE store)".into(),
        );
    }
    plan.push(format!("  legacy cipher key (SPIKE's root key): {}", planned(key_plan)));
    progress.finish();

    let source = describe_source(&store, db);
    if dry_run {
        output::line(&format!(
            "Dry run: nothing was written. From {source}, Nexus would import:\n{}\n\nSecrets: \
             {}. Policies: {}.{}",
            plan.join("\n"),
            secrets_plan.describe(true),
            policies_plan.describe(true),
            refusal_note(&refusals, force)
        ))?;
        return Ok(());
    }
    if !refusals.is_empty() {
        return Err(CliError::ImportRefused(format!(
            "{}{}",
            refusals.join("; "),
            if force { "" } else { ". Re-run with --force to replace what exists" }
        )));
    }

    // Write.
    let mut progress = Progress::new(total);
    let (mut secrets_done, mut policies_done) = (Tally::default(), Tally::default());
    let mut versions = 0;
    for secret in &mut store.secrets {
        secret.check = false;
        progress.step("Importing");
        let outcome = spike.import_secret(secret).await.map_err(|e| interrupted(e, true))?;
        secrets_done.add(outcome);
        versions += secret.versions.len();
    }
    for policy in &mut store.policies {
        policy.check = false;
        progress.step("Importing");
        let outcome = spike.import_policy(policy).await.map_err(|e| interrupted(e, true))?;
        policies_done.add(outcome);
    }
    key_request.check = false;
    progress.step("Importing");
    let (key_done, _) =
        spike.import_cipher_key(&key_request).await.map_err(|e| interrupted(e, true))?;
    progress.finish();
    output::line(&format!(
        "Imported {source} in {:.1} s.\nSecrets: {} ({}), {versions} versions.\nPolicies: {} \
         ({}).\nLegacy cipher key: {}; ciphertexts SPIKE's cipher service made open with `spike \
         cipher decrypt` (retire it with `spike operator legacy-cipher-key --retire` once \
         callers have re-encrypted).",
        started.elapsed().as_secs_f64(),
        store.secrets.len(),
        secrets_done.describe(false),
        store.policies.len(),
        policies_done.describe(false),
        key_done.as_str()
    ))
}

/// `spike operator legacy-cipher-key [--retire]`.
pub async fn legacy_cipher_key(conn: &Connection, retire: bool) -> Result<(), CliError> {
    let spike: Spike = client(conn).await?;
    let request = ImportCipherKeyRequest { retire: true, check: !retire, ..Default::default() };
    let (outcome, decrypts) = spike.import_cipher_key(&request).await?;
    let used = format!(
        "this Nexus opened {decrypts} SPIKE-made ciphertexts with it since it started \
         (spike_nexus_cipher_legacy_decrypts_total on /metrics)"
    );
    output::line(&match (retire, outcome) {
        (false, ImportOutcome::Retired) => {
            format!("A legacy (SPIKE) cipher key is stored; {used}.")
        }
        (true, ImportOutcome::Retired) => {
            format!(
                "Retired the legacy cipher key: SPIKE-made ciphertexts no longer open. Before: {used}."
            )
        }
        _ => "No legacy cipher key is stored.".to_owned(),
    })
}

fn planned(outcome: ImportOutcome) -> &'static str {
    match outcome {
        ImportOutcome::Created => "new",
        ImportOutcome::Replaced => "replace (--force)",
        ImportOutcome::Unchanged => "already imported",
        ImportOutcome::Conflict => "EXISTS with other content (needs --force)",
        ImportOutcome::Retired => "retire",
    }
}

fn refusal_note(refusals: &[String], force: bool) -> String {
    if refusals.is_empty() {
        return String::new();
    }
    format!(
        "\nThe import would be refused: {}{}",
        refusals.join("; "),
        if force { "" } else { ". Re-run with --force to replace what exists" }
    )
}

fn describe_source(store: &SpikeStore, db: &Path) -> String {
    let kib = |n: u64| n.div_ceil(1024);
    let wal = match store.source.wal_bytes {
        Some(n) => format!(" + {} KiB of WAL", kib(n)),
        None => String::new(),
    };
    format!("{} ({} KiB{wal})", db.display(), kib(store.source.db_bytes))
}

/// A failure during the check or write step, with what to do next.
fn interrupted(e: ClientError, writing: bool) -> CliError {
    if !writing {
        return CliError::Client(e);
    }
    CliError::Usage(format!(
        "the import stopped part way: {}. Paths written so far are complete; run the same \
         command again to finish (what is already imported is skipped)",
        spike_core::error::chain(&e)
    ))
}
