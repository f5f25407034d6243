//! SPIKE's environment variables for clients, mapped in one place.

use std::time::Duration;

/// The Workload API socket (`unix:///path`), as every SPIFFE library reads it.
pub const ENV_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";
/// Nexus's URL, SPIKE's SDK name (e.g. `https://127.0.0.1:8553`).
pub const ENV_NEXUS_API_URL: &str = "SPIKE_NEXUS_API_URL";
/// Nexus's URL, the name SPIKE's SDK guide uses; read when `SPIKE_NEXUS_API_URL` is unset.
pub const ENV_NEXUS_URL: &str = "SPIKE_NEXUS_URL";
/// The trust domain of SPIKE's components (Nexus's SPIFFE ID lives in it).
pub const ENV_TRUST_ROOT: &str = "SPIKE_TRUST_ROOT";
/// Per-role override of Nexus's trust domain.
pub const ENV_TRUST_ROOT_NEXUS: &str = "SPIKE_TRUST_ROOT_NEXUS";

/// Nexus's default URL (SPIKE's default port).
pub const DEFAULT_NEXUS_URL: &str = "https://localhost:8553";
/// How long a whole request may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting (TCP + TLS) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the first SVID from the Workload API by default.
pub const DEFAULT_SVID_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a non-empty environment variable.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Nexus's URL from the environment, or the default.
pub fn nexus_url_from_env() -> String {
    env(ENV_NEXUS_API_URL)
        .or_else(|| env(ENV_NEXUS_URL))
        .unwrap_or_else(|| DEFAULT_NEXUS_URL.into())
}

/// Nexus's expected SPIFFE ID from the environment's trust root.
pub fn nexus_id_from_env() -> String {
    let td = env(ENV_TRUST_ROOT_NEXUS)
        .or_else(|| env(ENV_TRUST_ROOT).and_then(|v| v.split(',').next().map(str::to_owned)))
        .unwrap_or_else(|| spike_core::identity::DEFAULT_TRUST_DOMAIN.into());
    spike_core::identity::Role::Nexus.spiffe_id(&td)
}

/// Parses a Go-style duration as SPIKE's settings are written: `500ms`, `30s`, `5m`, `1h`, or
/// a sum like `1m30s`. `None` for anything else (callers name the setting in their error).
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        total = total.saturating_add(match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return None,
        });
        rest = &rest[unit_len..];
    }
    Some(total)
}
