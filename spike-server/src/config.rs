//! Parsing helpers shared by every daemon's configuration: SPIKE-style listen addresses and
//! Go-style durations, with errors that say what was wrong and what is accepted.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::ConfigError;

/// Parses a listen address the way SPIKE writes it: `:8553` (all interfaces), or
/// `host:port` / `[v6]:port`.
pub fn parse_listen_addr(name: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    let spelled = if value.starts_with(':') { format!("0.0.0.0{value}") } else { value.to_owned() };
    spelled.parse().map_err(|_| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected: "\":PORT\", \"HOST:PORT\" or \"[V6]:PORT\", e.g. \":8553\" or \"127.0.0.1:8553\"",
    })
}

/// Parses a Go-style duration: `500ms`, `30s`, `5m`, `1h`, or a combination like `1m30s`.
pub fn parse_duration(name: &'static str, value: &str) -> Result<Duration, ConfigError> {
    spike_client::config::parse_go_duration(value).ok_or_else(|| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected: "a duration like \"500ms\", \"30s\", \"5m\", \"1h\" or \"1m30s\"",
    })
}

/// Parses a `SPIKE_TRUST_ROOT*` setting: one trust domain or a comma-separated list (SPIKE),
/// every entry a valid trust domain name.
pub fn parse_trust_roots(name: &'static str, value: &str) -> Result<Vec<String>, ConfigError> {
    spike_core::identity::parse_trust_domains(value).map_err(|reason| ConfigError::TrustRoot {
        name,
        value: value.to_owned(),
        reason,
    })
}

/// Parses a positive integer setting within `min..=max`.
pub fn parse_bounded(
    name: &'static str,
    value: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::OutOfRange { name, value: value.to_owned(), min, max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen_addr("X", ":8553").unwrap().port(), 8553);
        assert!(parse_listen_addr("X", "127.0.0.1:0").unwrap().ip().is_loopback());
        let err = parse_listen_addr("SPIKE_NEXUS_TLS_PORT", "8553").unwrap_err().to_string();
        assert!(err.contains("SPIKE_NEXUS_TLS_PORT") && err.contains(":8553"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("X", "1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("X", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("X", "2h").unwrap(), Duration::from_secs(7200));
        for bad in ["", "5", "s", "5x", "-5s", "1.5s"] {
            assert!(parse_duration("X", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trust_root_lists_name_the_variable_and_the_bad_entry() {
        assert_eq!(parse_trust_roots("X", "a.org, b.org").unwrap(), ["a.org", "b.org"]);
        let err = parse_trust_roots("SPIKE_TRUST_ROOT_KEEPER", "a.org,B.org").unwrap_err();
        let message = err.to_string();
        assert!(message.contains("SPIKE_TRUST_ROOT_KEEPER=\"a.org,B.org\""), "{message}");
        assert!(message.contains("\"B.org\" is not a trust domain"), "{message}");
        let err = parse_trust_roots("SPIKE_TRUST_ROOT", "a.org,,b.org").unwrap_err().to_string();
        assert!(err.contains("SPIKE_TRUST_ROOT=") && err.contains("empty entry"), "{err}");
    }

    #[test]
    fn bounded_integers_name_the_range() {
        assert_eq!(parse_bounded("N", "10", 1, 100).unwrap(), 10);
        let err = parse_bounded("N", "0", 1, 100).unwrap_err().to_string();
        assert!(err.contains("between 1 and 100"), "{err}");
    }
}
