//! spike-bootstrap: deals the first root key to the Keepers, once, and proves Nexus holds it.
//!
//! 1. **Refuse to run twice.** Ask Nexus's `/readyz` (over mTLS, as Bootstrap). A ready Nexus
//!    already holds a root key; a not-ready Nexus whose store is `initialised` (the
//!    [`STORE_STATE_HEADER`] says so) has data sealed under an existing root key and is waiting
//!    for its Keepers or for `spike operator restore`. Either way the system is bootstrapped:
//!    exit successfully and change nothing. Only an `empty` store is bootstrapped. The record
//!    of "done" is therefore the store's key check value itself — no marker file that can go
//!    stale, no extra state. `SPIKE_BOOTSTRAP_FORCE=true` skips the check and re-deals; a new
//!    key orphans any existing data (Nexus refuses it, and keeps re-arming the Keepers with
//!    the old key's shards while it runs), so it is only for a deliberately wiped system.
//! 2. **Deal.** Make a root key from the OS CSPRNG, split it (`SPIKE_NEXUS_SHAMIR_SHARES` /
//!    `_THRESHOLD`), and send share n to the n-th Keeper of `SPIKE_NEXUS_KEEPER_PEERS`, all in
//!    parallel, each with bounded retries and backoff. Every Keeper must take its shard.
//! 3. **Verify.** Nexus, seeing an empty store, recovers the key from the Keepers by itself.
//!    Bootstrap waits (bounded) for that, then calls `/v1/bootstrap/verify` the way SPIKE's Go
//!    bootstrap does: a random hex text sealed with AES-256-GCM under the root key (12-byte
//!    nonce, no associated data); Nexus answers the SHA-256 of what it opened.
//!
//! Run one Bootstrap at a time: two concurrent first runs against an empty store race, and
//! the loser's verification fails (nothing is lost: the store was empty).

use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use spike_client::identity::IdentitySource;
use spike_core::error::chain;
use spike_core::identity::{DEFAULT_TRUST_DOMAIN, Role};
use spike_core::secret::{KeeperShare, RootKey, fill_random};
use spike_core::shamir;
use spike_core::wire::bootstrap::{BootstrapVerifyRequest, BootstrapVerifyResponse};
use spike_core::wire::{self, PATH_BOOTSTRAP_VERIFY};
use zeroize::Zeroizing;

use crate::config::{parse_bounded, parse_duration};
use crate::error::ConfigError;
use crate::keeper::client::mtls_http_client;
use crate::keeper::{KeeperClient, KeeperError, keeper_matchers};
use crate::nexus::authz::{TrustRootArgs, TrustRoots};
pub use crate::nexus::recovery::STORE_STATE_HEADER;

/// Default for `SPIKE_BOOTSTRAP_NEXUS_TIMEOUT`: how long to wait for Nexus.
pub const DEFAULT_NEXUS_TIMEOUT: Duration = Duration::from_secs(120);
/// Default for `SPIKE_BOOTSTRAP_KEEPER_ATTEMPTS`.
pub const DEFAULT_KEEPER_ATTEMPTS: u32 = 10;
/// Default time allowed for one call to a Keeper or to Nexus.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// First wait between two attempts; doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Why Bootstrap failed. Every message says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// A setting is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The identity or TLS layer failed.
    #[error("identity/TLS: {0}")]
    Tls(String),
    /// Not every Keeper took its shard.
    #[error(
        "only {armed} of {total} Keepers took their shard:\n{failures}\nstart the missing \
         Keepers (or fix SPIKE_NEXUS_KEEPER_PEERS) and run spike-bootstrap again; if at least \
         the threshold took theirs, Nexus may already have initialised from them and will \
         re-arm the others itself (spike-bootstrap then reports \"already bootstrapped\")"
    )]
    Keepers {
        /// Keepers that hold their shard.
        armed: usize,
        /// Keepers configured.
        total: usize,
        /// One line per failed Keeper.
        failures: String,
    },
    /// Nexus could not be reached in time.
    #[error(
        "cannot reach SPIKE Nexus at {url} within {waited:?}: {reason}; start Nexus (with \
         SPIKE_NEXUS_BACKEND_STORE=sled and the same SPIKE_NEXUS_KEEPER_PEERS) and check \
         SPIKE_NEXUS_API_URL"
    )]
    NexusUnreachable {
        /// Nexus's URL.
        url: String,
        /// How long we tried.
        waited: Duration,
        /// The last failure.
        reason: String,
    },
    /// Nexus did not become ready in time after the Keepers were armed.
    #[error(
        "SPIKE Nexus at {url} did not become ready within {waited:?} after the Keepers were \
         armed (last answer: {last}); check that Nexus lists the same Keepers in \
         SPIKE_NEXUS_KEEPER_PEERS, in the same order, and see its /readyz and log"
    )]
    NexusNotReady {
        /// Nexus's URL.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// Nexus's last answer.
        last: String,
    },
    /// Nexus refused Bootstrap's identity.
    #[error(
        "SPIKE Nexus at {url} refused this identity (HTTP {status}); spike-bootstrap must run \
         as spiffe://<SPIKE_TRUST_ROOT_BOOTSTRAP>/spike/bootstrap"
    )]
    NexusRefused {
        /// Nexus's URL.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// Nexus holds a different root key than the one just dealt.
    #[error(
        "SPIKE Nexus holds a different root key than the one just dealt ({detail}); its store \
         was initialised by another dealing. Nothing was changed in Nexus's store; the \
         Keepers are re-armed by Nexus with its own key within SPIKE_NEXUS_KEEPER_UPDATE_INTERVAL"
    )]
    VerifyMismatch {
        /// What Nexus answered.
        detail: String,
    },
    /// The key could not be made or split.
    #[error("cannot make the root key: {0}")]
    Crypto(String),
}

/// What Bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// A root key was dealt to every Keeper and Nexus proved it holds it.
    Bootstrapped {
        /// Keepers armed.
        keepers: usize,
    },
    /// The system was already bootstrapped; nothing was changed.
    AlreadyBootstrapped {
        /// How we know.
        reason: String,
    },
}

/// The validated Bootstrap configuration.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    /// Keeper URLs, positional: the n-th gets share n (`SPIKE_NEXUS_KEEPER_PEERS`).
    pub keeper_peers: Vec<String>,
    /// Shamir share count (`SPIKE_NEXUS_SHAMIR_SHARES`); equals the number of Keepers.
    pub shamir_shares: usize,
    /// Shamir threshold (`SPIKE_NEXUS_SHAMIR_THRESHOLD`).
    pub shamir_threshold: usize,
    /// Nexus's URL (`SPIKE_NEXUS_API_URL`, then `SPIKE_NEXUS_URL`).
    pub nexus_url: String,
    /// Trust domains of Nexus and the Keepers (`SPIKE_TRUST_ROOT*`).
    pub trust_roots: TrustRoots,
    /// Deal even if the system looks bootstrapped (`SPIKE_BOOTSTRAP_FORCE`).
    pub force: bool,
    /// Attempts per Keeper before giving up (`SPIKE_BOOTSTRAP_KEEPER_ATTEMPTS`; extension).
    pub keeper_attempts: u32,
    /// Time allowed for one call to a Keeper or to Nexus.
    pub call_timeout: Duration,
    /// How long to wait for Nexus, before dealing and again before verifying
    /// (`SPIKE_BOOTSTRAP_NEXUS_TIMEOUT`; extension).
    pub nexus_timeout: Duration,
}

impl BootstrapConfig {
    /// A configuration for these Keepers and this Nexus, with SPIKE's defaults otherwise
    /// (3 shares, threshold 2 — pass as many Keepers as shares).
    pub fn new(keeper_peers: Vec<String>, nexus_url: impl Into<String>) -> Self {
        Self {
            shamir_shares: keeper_peers.len(),
            shamir_threshold: 2.min(keeper_peers.len()),
            keeper_peers,
            nexus_url: nexus_url.into(),
            trust_roots: TrustRoots::single(DEFAULT_TRUST_DOMAIN),
            force: false,
            keeper_attempts: DEFAULT_KEEPER_ATTEMPTS,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            nexus_timeout: DEFAULT_NEXUS_TIMEOUT,
        }
    }

    /// Checks that the settings agree with each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (n, t) = (self.shamir_shares, self.shamir_threshold);
        if self.keeper_peers.is_empty() {
            return Err(ConfigError::Conflict(
                "SPIKE_NEXUS_KEEPER_PEERS is empty: list the Keeper URLs, comma-separated, e.g. \
                 https://127.0.0.1:8443,https://127.0.0.1:8543,https://127.0.0.1:8643"
                    .into(),
            ));
        }
        if self.keeper_peers.len() != n {
            return Err(ConfigError::Conflict(format!(
                "SPIKE_NEXUS_KEEPER_PEERS lists {} Keepers but SPIKE_NEXUS_SHAMIR_SHARES is {n}: \
                 Keeper n gets share n, so give exactly one URL per share",
                self.keeper_peers.len()
            )));
        }
        if t == 0 || t > n || (t == 1 && n != 1) || n > shamir::MAX_SHARES {
            return Err(ConfigError::Conflict(format!(
                "SPIKE_NEXUS_SHAMIR_THRESHOLD={t} with SPIKE_NEXUS_SHAMIR_SHARES={n} is not \
                 allowed: use 2 <= threshold <= shares <= 255 (or 1 of 1 for development)"
            )));
        }
        if let Some(bad) = self.keeper_peers.iter().find(|p| !p.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_KEEPER_PEERS",
                value: bad.clone(),
                expected: "comma-separated https:// URLs, e.g. https://127.0.0.1:8443",
            });
        }
        if !self.nexus_url.starts_with("https://") {
            return Err(ConfigError::Invalid {
                name: "SPIKE_NEXUS_API_URL",
                value: self.nexus_url.clone(),
                expected: "an https:// URL, e.g. https://127.0.0.1:8553",
            });
        }
        Ok(())
    }
}

/// Bootstrap flags; each falls back to SPIKE's environment variable of the same meaning.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// Comma-separated Keeper URLs (the n-th gets share n).
    #[arg(long, env = "SPIKE_NEXUS_KEEPER_PEERS", default_value = "")]
    pub keeper_peers: String,
    /// Shamir share count (one per Keeper).
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_SHARES", default_value = "3")]
    pub shamir_shares: String,
    /// Shamir threshold.
    #[arg(long, env = "SPIKE_NEXUS_SHAMIR_THRESHOLD", default_value = "2")]
    pub shamir_threshold: String,
    /// Nexus's URL [default: $SPIKE_NEXUS_URL, else https://localhost:8553].
    #[arg(long, env = "SPIKE_NEXUS_API_URL")]
    pub nexus_api_url: Option<String>,
    /// Re-deal even if the system is already bootstrapped (orphans existing data): true/false.
    #[arg(long, env = "SPIKE_BOOTSTRAP_FORCE", default_value = "false")]
    pub force: String,
    /// Trust domain(s) of SPIKE's components, comma-separated.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = DEFAULT_TRUST_DOMAIN)]
    pub trust_root: String,
    /// Trust domain(s) of Nexus, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_NEXUS")]
    pub trust_root_nexus: Option<String>,
    /// Trust domain(s) of the Keepers, comma-separated (defaults to --trust-root).
    #[arg(long, env = "SPIKE_TRUST_ROOT_KEEPER")]
    pub trust_root_keeper: Option<String>,
    /// Trust domain(s) of Bootstrap, comma-separated (defaults to --trust-root): picks this
    /// process's SVID when the Workload API hands out several.
    #[arg(long, env = "SPIKE_TRUST_ROOT_BOOTSTRAP")]
    pub trust_root_bootstrap: Option<String>,
    /// Attempts per Keeper before giving up.
    #[arg(long, env = "SPIKE_BOOTSTRAP_KEEPER_ATTEMPTS", default_value = "10")]
    pub keeper_attempts: String,
    /// How long to wait for Nexus, e.g. "2m".
    #[arg(long, env = "SPIKE_BOOTSTRAP_NEXUS_TIMEOUT", default_value = "2m")]
    pub nexus_timeout: String,
    /// Accepted and ignored: SPIKE's bootstrap requires `-init` (its scripts and Helm charts
    /// pass it); here bootstrapping is what the binary always does, and it already refuses to
    /// run twice. Also spelled `-init` (see [`normalize_go_flags`]).
    #[arg(long)]
    pub init: bool,
}

/// Rewrites the Go-style single-dash flags SPIKE's deployments pass to `spike-bootstrap`
/// (`-init`, `-init=true`) into the `--init` clap understands, so SPIKE's scripts keep working;
/// `-init=false` is dropped. Every other argument is passed through unchanged.
pub fn normalize_go_flags<I>(args: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    args.into_iter()
        .filter_map(|arg| match arg.to_str() {
            Some("-init" | "--init" | "-init=true" | "--init=true") => Some("--init".into()),
            Some("-init=false" | "--init=false") => None,
            _ => Some(arg),
        })
        .collect()
}

impl TryFrom<BootstrapArgs> for BootstrapConfig {
    type Error = ConfigError;

    fn try_from(a: BootstrapArgs) -> Result<Self, ConfigError> {
        let shares = parse_bounded("SPIKE_NEXUS_SHAMIR_SHARES", &a.shamir_shares, 1, 255)?;
        let threshold =
            parse_bounded("SPIKE_NEXUS_SHAMIR_THRESHOLD", &a.shamir_threshold, 1, shares)?;
        let force = match a.force.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "SPIKE_BOOTSTRAP_FORCE",
                    value: a.force.clone(),
                    expected: "\"true\" or \"false\"",
                });
            }
        };
        let trust_roots = TrustRoots::parse(&TrustRootArgs {
            trust_root: &a.trust_root,
            nexus: a.trust_root_nexus.as_deref(),
            keeper: a.trust_root_keeper.as_deref(),
            bootstrap: a.trust_root_bootstrap.as_deref(),
            ..TrustRootArgs::default()
        })?;
        let nexus_url = a
            .nexus_api_url
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(spike_client::config::nexus_url_from_env)
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let nexus_timeout = parse_duration("SPIKE_BOOTSTRAP_NEXUS_TIMEOUT", &a.nexus_timeout)?;
        let config = Self {
            keeper_peers: a
                .keeper_peers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            shamir_shares: shares as usize,
            shamir_threshold: threshold as usize,
            nexus_url,
            trust_roots,
            force,
            keeper_attempts: parse_bounded(
                "SPIKE_BOOTSTRAP_KEEPER_ATTEMPTS",
                &a.keeper_attempts,
                1,
                1000,
            )? as u32,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            nexus_timeout,
        };
        config.validate()?;
        Ok(config)
    }
}

/// What Nexus's `/readyz` said about its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NexusStore {
    Ready,
    Initialised,
    Empty,
    Unknown,
}

/// Bootstraps with the SVID from the Workload API (`SPIFFE_ENDPOINT_SOCKET`): the body of
/// the `spike-bootstrap` binary.
pub async fn run_from_env(config: BootstrapConfig) -> Result<BootstrapOutcome, BootstrapError> {
    let choice = config.trust_roots.svid_choice(Role::Bootstrap);
    let source = IdentitySource::from_env_choosing(choice)
        .await
        .map_err(|e| BootstrapError::Tls(e.to_string()))?;
    run(config, source).await
}

/// Bootstraps the system (see the [module docs](self)) with the SVID from `source`, which must
/// be Bootstrap's.
pub async fn run(
    config: BootstrapConfig,
    source: IdentitySource,
) -> Result<BootstrapOutcome, BootstrapError> {
    config.validate()?;
    let tls = |e: KeeperError| BootstrapError::Tls(e.to_string());
    let nexus_ids =
        config.trust_roots.matchers(Role::Nexus).map_err(|e| BootstrapError::Tls(e.to_string()))?;
    let nexus = Nexus {
        http: mtls_http_client(source.clone(), nexus_ids, config.call_timeout).map_err(tls)?,
        url: config.nexus_url.clone(),
    };
    let keepers = KeeperClient::new(
        source,
        keeper_matchers(&config.trust_roots).map_err(tls)?,
        config.call_timeout,
    )
    .map_err(tls)?;

    if config.force {
        tracing::warn!(
            "SPIKE_BOOTSTRAP_FORCE is set: dealing a NEW root key without checking whether the \
             system is already bootstrapped. Data sealed under an existing root key becomes \
             unreadable unless its shards (spike operator recover) are kept"
        );
    } else {
        match nexus.store_state(config.nexus_timeout).await? {
            NexusStore::Ready => {
                return Ok(BootstrapOutcome::AlreadyBootstrapped {
                    reason: "Nexus is ready: it already holds a root key".into(),
                });
            }
            NexusStore::Initialised => {
                return Ok(BootstrapOutcome::AlreadyBootstrapped {
                    reason: "Nexus's store is initialised under an existing root key; Nexus \
                             recovers it from its Keepers, or restore it with `spike operator \
                             restore`"
                        .into(),
                });
            }
            NexusStore::Empty => tracing::info!("Nexus's store is empty: bootstrapping"),
            NexusStore::Unknown => tracing::warn!(
                "Nexus does not say whether its store is initialised (not a spike-rs Nexus?); \
                 dealing a root key as SPIKE's bootstrap would"
            ),
        }
    }

    let root = shamir::generate_root_key().map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    let shares = shamir::split(&root, config.shamir_threshold, config.shamir_shares)
        .map_err(|e| BootstrapError::Crypto(e.to_string()))?;
    deal(&keepers, &config, &shares).await?;
    drop(shares);
    tracing::info!(
        keepers = config.keeper_peers.len(),
        "every Keeper holds its shard; waiting for Nexus to recover the root key"
    );
    nexus.verify(&root, config.nexus_timeout).await?;
    tracing::info!("Nexus holds the root key just dealt: bootstrap complete");
    Ok(BootstrapOutcome::Bootstrapped { keepers: config.keeper_peers.len() })
}

/// Sends share n to Keeper n, all Keepers in parallel, each with bounded retries.
async fn deal(
    keepers: &KeeperClient,
    config: &BootstrapConfig,
    shares: &[KeeperShare],
) -> Result<(), BootstrapError> {
    let attempts = config.keeper_attempts.max(1);
    let sends = config.keeper_peers.iter().zip(shares).map(|(url, share)| async move {
        let mut delay = FIRST_RETRY;
        let mut last = None;
        for attempt in 1..=attempts {
            match keepers.contribute(url, share).await {
                Ok(()) => {
                    tracing::info!(keeper = share.index(), %url, "Keeper took its shard");
                    return (share.index(), url, Ok(()));
                }
                // A refusal is about identity, not timing: retrying will not help.
                Err(e @ KeeperError::Refused { .. }) => return (share.index(), url, Err(e)),
                Err(e) => {
                    tracing::warn!(keeper = share.index(), attempt, error = %e, "retrying");
                    last = Some(e);
                }
            }
            if attempt < attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY);
            }
        }
        let e = last.unwrap_or(KeeperError::Protocol {
            url: url.clone(),
            reason: "no attempt was made".into(),
        });
        (share.index(), url, Err(e))
    });
    let results = futures::future::join_all(sends).await;
    let total = results.len();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|(index, url, r)| {
            r.as_ref()
                .err()
                .map(|e| format!("  Keeper {index} ({url}), after {attempts} attempts: {e}"))
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BootstrapError::Keepers {
            armed: total - failures.len(),
            total,
            failures: failures.join("\n"),
        })
    }
}

/// Nexus, as Bootstrap sees it.
struct Nexus {
    http: reqwest::Client,
    url: String,
}

impl Nexus {
    /// Reads `/readyz` (retrying while Nexus is unreachable, up to `wait`).
    async fn store_state(&self, wait: Duration) -> Result<NexusStore, BootstrapError> {
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        loop {
            let answer = self.http.get(format!("{}/readyz", self.url)).send().await;
            match answer {
                Ok(r) => {
                    let store = r
                        .headers()
                        .get(STORE_STATE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    return Ok(match (r.status().as_u16(), store.as_str()) {
                        (200, _) => NexusStore::Ready,
                        (_, "initialised") => NexusStore::Initialised,
                        (_, "empty") => NexusStore::Empty,
                        _ => NexusStore::Unknown,
                    });
                }
                Err(e) if started.elapsed() + delay > wait => {
                    return Err(BootstrapError::NexusUnreachable {
                        url: self.url.clone(),
                        waited: started.elapsed(),
                        reason: chain(&e),
                    });
                }
                Err(e) => tracing::info!(error = %chain(&e), "Nexus not reachable yet; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    /// Proves Nexus holds `root` (SPIKE's `/v1/bootstrap/verify`), waiting up to `wait` for it
    /// to become ready.
    async fn verify(&self, root: &RootKey, wait: Duration) -> Result<(), BootstrapError> {
        let crypto = |e: &dyn std::fmt::Display| BootstrapError::Crypto(e.to_string());
        // SPIKE's bootstrap seals the hex of 32 random bytes.
        let mut random = Zeroizing::new([0u8; 32]);
        fill_random(&mut random[..]).map_err(|e| crypto(&e))?;
        let text = Zeroizing::new(hex::encode(&random[..]));
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce).map_err(|e| crypto(&e))?;
        let cipher = Aes256Gcm::new(root.expose_secret().into());
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), text.as_bytes())
            .map_err(|_| crypto(&"AES-256-GCM sealing failed"))?;
        let expected = hex::encode(Sha256::digest(text.as_bytes()));
        let request =
            BootstrapVerifyRequest { nonce: Some(nonce.to_vec()), ciphertext: Some(ciphertext) };
        let body = wire::encode(&request).map_err(|e| crypto(&e))?.to_vec();

        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let target = format!("{}{PATH_BOOTSTRAP_VERIFY}", self.url);
        loop {
            let answer = self
                .http
                .post(&target)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let last = match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await.unwrap_or_default();
                    match status {
                        200 => {
                            let resp: BootstrapVerifyResponse =
                                wire::decode(&bytes).map_err(|e| {
                                    BootstrapError::VerifyMismatch {
                                        detail: format!("its answer does not decode: {e}"),
                                    }
                                })?;
                            let same: bool = subtle::ConstantTimeEq::ct_eq(
                                resp.hash.as_bytes(),
                                expected.as_bytes(),
                            )
                            .into();
                            return if same {
                                Ok(())
                            } else {
                                Err(BootstrapError::VerifyMismatch {
                                    detail: "it opened the text to a different hash".into(),
                                })
                            };
                        }
                        401 | 403 => {
                            return Err(BootstrapError::NexusRefused {
                                url: self.url.clone(),
                                status,
                            });
                        }
                        // Our Nexus answers 500 when the text does not open under its key.
                        500 => {
                            return Err(BootstrapError::VerifyMismatch {
                                detail: "it could not open the verification text (HTTP 500)".into(),
                            });
                        }
                        503 => "503: not ready yet".to_owned(),
                        other => format!("HTTP {other}"),
                    }
                }
                Err(e) => format!("unreachable: {}", chain(&e)),
            };
            if started.elapsed() + delay > wait {
                return Err(BootstrapError::NexusNotReady {
                    url: self.url.clone(),
                    waited: started.elapsed(),
                    last,
                });
            }
            tracing::debug!(%last, "Nexus cannot verify yet; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bootstrap: BootstrapArgs,
    }

    fn parse(args: &[&str]) -> Result<BootstrapConfig, ConfigError> {
        let mut argv = vec!["spike-bootstrap"];
        argv.extend_from_slice(args);
        BootstrapConfig::try_from(Cli::try_parse_from(argv).unwrap().bootstrap)
    }

    const PEERS: &str = "https://127.0.0.1:1,https://127.0.0.1:2,https://127.0.0.1:3";

    #[test]
    fn flags_map_to_config_with_spike_defaults() {
        let c =
            parse(&["--keeper-peers", PEERS, "--nexus-api-url", "https://127.0.0.1:9/"]).unwrap();
        assert_eq!((c.shamir_shares, c.shamir_threshold), (3, 2));
        assert_eq!(c.keeper_peers.len(), 3);
        assert_eq!(c.nexus_url, "https://127.0.0.1:9");
        assert!(!c.force);
        let c =
            parse(&["--keeper-peers", PEERS, "--nexus-api-url", "https://x", "--force", "true"])
                .unwrap();
        assert!(c.force);
    }

    #[test]
    fn spikes_init_flag_is_accepted_in_go_and_clap_spelling_and_changes_nothing() {
        let base = ["spike-bootstrap", "--keeper-peers", PEERS, "--nexus-api-url", "https://x"];
        for init in ["-init", "--init", "-init=true", "-init=false"] {
            let mut argv: Vec<std::ffi::OsString> = base.iter().map(Into::into).collect();
            argv.insert(1, init.into());
            let cli = Cli::try_parse_from(normalize_go_flags(argv)).unwrap();
            assert_eq!(cli.bootstrap.init, init != "-init=false", "{init}");
            let config = BootstrapConfig::try_from(cli.bootstrap).unwrap();
            assert_eq!(config.keeper_peers.len(), 3, "{init}");
        }
        // Without the rewrite, clap would read `-init` as the short flags -i -n -i -t.
        assert!(Cli::try_parse_from(["spike-bootstrap", "-init"]).is_err());
    }

    #[test]
    fn trust_roots_are_lists_and_bad_entries_name_the_variable() {
        let c = parse(&[
            "--keeper-peers",
            PEERS,
            "--nexus-api-url",
            "https://x",
            "--trust-root",
            "a.org,b.org",
            "--trust-root-keeper",
            "k.org",
        ])
        .unwrap();
        assert_eq!(c.trust_roots.nexus, ["a.org", "b.org"]);
        assert_eq!(c.trust_roots.keeper, ["k.org"]);
        let err = parse(&["--keeper-peers", PEERS, "--trust-root-nexus", "a.org,A.org"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SPIKE_TRUST_ROOT_NEXUS") && err.contains("\"A.org\""), "{err}");
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let err = parse(&["--nexus-api-url", "https://x"]).unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_KEEPER_PEERS is empty"), "{err}");
        let err = parse(&["--keeper-peers", "https://127.0.0.1:1", "--nexus-api-url", "https://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("one URL per share"), "{err}");
        let err = parse(&["--keeper-peers", PEERS, "--nexus-api-url", "https://x", "--force", "y"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SPIKE_BOOTSTRAP_FORCE"), "{err}");
        let err = parse(&["--keeper-peers", PEERS, "--nexus-api-url", "http://x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SPIKE_NEXUS_API_URL"), "{err}");
    }
}
