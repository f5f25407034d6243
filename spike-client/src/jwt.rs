//! JWT-SVID authentication (spike-rs extension): for a Nexus JWT listener
//! (`SPIKE_NEXUS_JWT_TLS_PORT`), the client presents no client certificate and sends
//! `Authorization: Bearer <JWT-SVID>` on every request instead.
//!
//! The token is fetched from the Workload API for one audience (`FetchJWTSVID`) and reused
//! until little of its lifetime is left: a new one is fetched once less than half of it (and
//! at most [`REFRESH_BEFORE`]) remains, so a token is never sent in its last moments. The
//! token is a bearer credential: kept in zeroizing memory, never logged or printed.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A token is replaced when this little of its lifetime is left, at the latest.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);

/// Where a [`crate::Spike`] gets its JWT-SVIDs from.
pub(crate) struct JwtTokens {
    endpoint: String,
    audience: String,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    token: Zeroizing<String>,
    refresh_at: OffsetDateTime,
}

impl fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtTokens")
            .field("endpoint", &self.endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtTokens {
    /// Tokens for `audience` from the Workload API at `endpoint`.
    pub(crate) fn new(endpoint: String, audience: String) -> Self {
        Self { endpoint, audience, cached: Mutex::new(None) }
    }

    /// A token that is valid for a while yet, fetched if needed.
    pub(crate) async fn bearer(&self) -> Result<Zeroizing<String>> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && OffsetDateTime::now_utc() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let token = self.fetch().await?;
        let refresh_at = refresh_time(&token, OffsetDateTime::now_utc());
        *cached = Some(Cached { token: token.clone(), refresh_at });
        Ok(token)
    }

    /// Forgets the cached token (after Nexus refused it), so the next call fetches anew.
    pub(crate) async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<Zeroizing<String>> {
        let unreachable = |e: &dyn std::fmt::Display| Error::JwtSvid {
            endpoint: self.endpoint.clone(),
            audience: self.audience.clone(),
            reason: e.to_string(),
        };
        let client = spiffe::WorkloadApiClient::connect_to(&self.endpoint)
            .await
            .map_err(|e| unreachable(&e))?;
        let token = client
            .fetch_jwt_token([self.audience.as_str()], None)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(Zeroizing::new(token))
    }
}

/// When to replace `token`: half-way through its life, and at least [`REFRESH_BEFORE`] before
/// it expires; a token whose `exp` cannot be read is used for one call only.
fn refresh_time(token: &str, now: OffsetDateTime) -> OffsetDateTime {
    let Some(exp) = expiry(token) else {
        return now;
    };
    let life: time::Duration = exp - now;
    let floor = time::Duration::try_from(REFRESH_BEFORE).unwrap_or(time::Duration::MINUTE);
    let half: time::Duration = life / 2_i32;
    exp - std::cmp::max(half, floor)
}

/// The `exp` claim of a compact JWT, read without verifying it (only to schedule a refresh;
/// Nexus verifies the token).
fn expiry(token: &str) -> Option<OffsetDateTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: i64,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    OffsetDateTime::from_unix_timestamp(claims.exp).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_expiring(exp: i64) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = b64.encode(format!(r#"{{"sub":"spiffe://x/y","exp":{exp}}}"#));
        format!("e30.{claims}.c2ln")
    }

    #[test]
    fn tokens_are_replaced_half_way_and_a_minute_before_expiry_at_the_latest() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let five_min = token_expiring(1_000_300);
        assert_eq!(refresh_time(&five_min, now).unix_timestamp(), 1_000_150);
        let ninety_s = token_expiring(1_000_090);
        assert_eq!(refresh_time(&ninety_s, now).unix_timestamp(), 1_000_030);
        assert_eq!(refresh_time("not.a.jwt", now), now, "unreadable: used once");
        assert_eq!(refresh_time("garbage", now), now);
    }
}
