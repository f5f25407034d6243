//! SPIKE's environment variables for clients, mapped in one place.

use std::time::Duration;

use crate::error::{Error, Result};

/// The Workload API socket (`unix:///path`), as every SPIFFE library reads it.
pub const ENV_ENDPOINT_SOCKET: &str = "SPIFFE_ENDPOINT_SOCKET";
/// The Workload API socket used when `SPIFFE_ENDPOINT_SOCKET` is unset: SPIRE agent's
/// default, as SPIKE falls back to it.
pub const DEFAULT_ENDPOINT_SOCKET: &str = "unix:///tmp/spire-agent/public/api.sock";
/// The SPIFFE ID of the SVID to present when the Workload API hands out several (a spike-rs
/// extension; without it the first SVID is used).
pub const ENV_SVID_ID: &str = "SPIKE_SVID_ID";
/// Nexus's URL, SPIKE's SDK name (e.g. `https://127.0.0.1:8553`).
pub const ENV_NEXUS_API_URL: &str = "SPIKE_NEXUS_API_URL";
/// Nexus's URL, the name SPIKE's SDK guide uses; read when `SPIKE_NEXUS_API_URL` is unset.
pub const ENV_NEXUS_URL: &str = "SPIKE_NEXUS_URL";
/// The URL of Nexus's JWT-SVID listener (spike-rs extension; `spike dev` writes it).
pub const ENV_NEXUS_JWT_API_URL: &str = "SPIKE_NEXUS_JWT_API_URL";
/// The trust domain of SPIKE's components (Nexus's SPIFFE ID lives in it).
pub const ENV_TRUST_ROOT: &str = "SPIKE_TRUST_ROOT";
/// Per-role override of Nexus's trust domain(s).
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

/// The Workload API endpoint: `explicit` if given, else `SPIFFE_ENDPOINT_SOCKET`, else SPIRE's
/// default socket [`DEFAULT_ENDPOINT_SOCKET`] if it exists. The one place the endpoint is
/// chosen, so the SDK, the CLI and the daemons agree.
pub fn workload_endpoint(explicit: Option<String>) -> Result<String> {
    choose_endpoint(explicit, env(ENV_ENDPOINT_SOCKET), |path| path.exists())
}

/// [`workload_endpoint`] with its inputs explicit, for tests.
fn choose_endpoint(
    explicit: Option<String>,
    from_env: Option<String>,
    exists: impl Fn(&std::path::Path) -> bool,
) -> Result<String> {
    if let Some(endpoint) = explicit.filter(|e| !e.trim().is_empty()).or(from_env) {
        return Ok(endpoint);
    }
    let default_path = DEFAULT_ENDPOINT_SOCKET.trim_start_matches("unix://");
    if exists(std::path::Path::new(default_path)) {
        return Ok(DEFAULT_ENDPOINT_SOCKET.to_owned());
    }
    Err(Error::EndpointNotSet)
}

/// Nexus's trust domains from the environment: `SPIKE_TRUST_ROOT_NEXUS`, else
/// `SPIKE_TRUST_ROOT`, else `spike.ist`; each a comma-separated list (SPIKE).
pub fn nexus_trust_domains_from_env() -> Result<Vec<String>> {
    let (name, value) = match env(ENV_TRUST_ROOT_NEXUS) {
        Some(v) => (ENV_TRUST_ROOT_NEXUS, v),
        None => match env(ENV_TRUST_ROOT) {
            Some(v) => (ENV_TRUST_ROOT, v),
            None => return Ok(vec![spike_core::identity::DEFAULT_TRUST_DOMAIN.to_owned()]),
        },
    };
    spike_core::identity::parse_trust_domains(&value).map_err(|e| Error::InvalidInput {
        what: format!("{name}={value:?}"),
        reason: e.to_string(),
    })
}

/// What the client accepts as Nexus when none is named: Nexus's ID or one below it (e.g.
/// `spiffe://spike.ist/spike/nexus/nexus-0`) in each of [`nexus_trust_domains_from_env`].
pub fn nexus_matchers_from_env() -> Result<Vec<crate::tls::IdMatcher>> {
    let tds = nexus_trust_domains_from_env()?;
    crate::tls::IdMatcher::role(spike_core::identity::Role::Nexus, &tds)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_falls_back_to_spires_default_socket_and_says_so_when_it_is_missing() {
        let never = |_: &std::path::Path| false;
        let always = |_: &std::path::Path| true;
        let given = Some("unix:///a.sock".to_owned());
        assert_eq!(choose_endpoint(given.clone(), None, never).unwrap(), "unix:///a.sock");
        assert_eq!(choose_endpoint(None, given, never).unwrap(), "unix:///a.sock");
        assert_eq!(choose_endpoint(None, None, always).unwrap(), DEFAULT_ENDPOINT_SOCKET);
        let seen = std::cell::RefCell::new(Vec::new());
        let err = choose_endpoint(Some(" ".into()), None, |p: &std::path::Path| {
            seen.borrow_mut().push(p.to_owned());
            false
        })
        .unwrap_err();
        assert_eq!(
            seen.into_inner(),
            [std::path::PathBuf::from("/tmp/spire-agent/public/api.sock")]
        );
        let message = err.to_string();
        assert!(message.contains("SPIFFE_ENDPOINT_SOCKET is not set"), "{message}");
        assert!(message.contains(DEFAULT_ENDPOINT_SOCKET), "{message}");
    }
}
