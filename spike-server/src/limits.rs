//! Request limits: body-size caps and a per-caller token-bucket rate limiter.
//!
//! Limits apply per verified SPIFFE ID, so one noisy workload cannot starve the others, and
//! the limiter's memory is bounded: idle buckets are dropped once [`MAX_TRACKED_CALLERS`] is
//! reached, which can only ever make a caller *less* limited, never lock one out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default cap on a request body (1 MiB), as the Nexus issue asks.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Most callers the limiter tracks at once before it drops idle ones.
pub const MAX_TRACKED_CALLERS: usize = 10_000;

/// Requests per second and burst size allowed per caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: 500.0, burst: 1000 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per caller, or no limit at all.
#[derive(Debug)]
pub struct RateLimiter {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter applying `limit` to each caller separately.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit: Some(limit), buckets: Mutex::new(HashMap::new()) }
    }

    /// A limiter applying `limit` when there is one, and otherwise letting every request
    /// through (without taking a lock).
    pub fn optional(limit: Option<RateLimit>) -> Self {
        Self { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// The configured limit, if any.
    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Takes one token for `caller`; on refusal returns how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        match self.limit {
            Some(limit) => self.check_at(limit, caller, Instant::now()),
            None => Ok(()),
        }
    }

    fn check_at(&self, limit: RateLimit, caller: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(limit.burst.max(1));
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_CALLERS && !buckets.contains_key(caller) {
            let rate = limit.per_second;
            // Drop buckets that have refilled completely: forgetting them changes nothing.
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if buckets.len() >= MAX_TRACKED_CALLERS {
                buckets.clear();
            }
        }
        // Look up before inserting so the hot path does not allocate the key.
        if !buckets.contains_key(caller) {
            buckets.insert(caller.to_owned(), Bucket { tokens: burst, last: now });
        }
        let Some(bucket) = buckets.get_mut(caller) else {
            return Ok(());
        };
        let refill = now.duration_since(bucket.last).as_secs_f64() * limit.per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if limit.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / limit.per_second))
        } else {
            Err(Duration::from_secs(60))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_then_refills_per_caller() {
        let limit = RateLimit { per_second: 10.0, burst: 3 };
        let limiter = RateLimiter::new(limit);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at(limit, "a", t0).unwrap();
        }
        let wait = limiter.check_at(limit, "a", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller is unaffected.
        limiter.check_at(limit, "b", t0).unwrap();
        // After 100 ms one token is back.
        limiter.check_at(limit, "a", t0 + Duration::from_millis(101)).unwrap();
        assert!(limiter.check_at(limit, "a", t0 + Duration::from_millis(101)).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let limit = RateLimit { per_second: 1.0, burst: 1 };
        let limiter = RateLimiter::new(limit);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED_CALLERS + 10) {
            let _ = limiter.check_at(limit, &format!("spiffe://x/{i}"), t0);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED_CALLERS);
    }

    #[test]
    fn without_a_limit_every_request_passes_and_nothing_is_tracked() {
        let limiter = RateLimiter::optional(None);
        for _ in 0..10_000 {
            limiter.check("spiffe://x/busy").unwrap();
        }
        assert!(limiter.buckets.lock().unwrap().is_empty());
    }
}
