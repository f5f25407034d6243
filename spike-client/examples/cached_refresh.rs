//! Cached secrets with refresh: read through a `SecretCache`, get notified when a secret
//! changes, and keep serving the last value if Nexus is briefly away.
//!
//! ```sh
//! source .spike-dev/env     # after `spike dev`
//! cargo run -p spike-client --example cached_refresh
//! ```
//!
//! The example rotates the secret itself (a second client would do the same), then waits —
//! bounded — for the cache's background refresh to notice.

use std::time::Duration;

use spike_client::cache::{CacheEvent, SecretCache, SecretState};
use spike_client::spike_core::secret::SecretValues;
use spike_client::{Error, Spike};

const PATH: &str = "examples/cached/api";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let spike = Spike::new().await?;
    let token = |t: &str| -> SecretValues { [("token", t)].into_iter().collect() };
    spike.put_secret(PATH, token("v1")).await?;

    let cache =
        SecretCache::builder(spike.clone()).refresh_interval(Duration::from_millis(500)).build()?;
    let mut events = cache.subscribe();

    // The first read goes to Nexus; later reads are served from memory.
    let first = cache.get(PATH).await?;
    let again = cache.get(PATH).await?;
    assert!(std::sync::Arc::ptr_eq(&first, &again), "the second read came from the cache");
    println!("cached {PATH}: token is {} bytes", first.get("token").unwrap_or_default().len());

    let mut watch = cache.watch(PATH).await?;
    spike.put_secret(PATH, token("v2")).await?;
    println!("rotated the token; waiting for the cache to notice...");

    let state = tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .map_err(|_| Error::Protocol("the cache did not see the change within 10 s".into()))?;
    match state {
        Some(SecretState::Present(values)) => {
            assert_eq!(values.get("token"), Some("v2"));
            println!("watch: {PATH} changed; new token is in the cache");
        }
        Some(SecretState::Gone) => println!("watch: {PATH} was deleted or access was revoked"),
        None => println!("watch: the cache stopped following {PATH}"),
    }
    if let Ok(CacheEvent::Changed { path }) = events.try_recv() {
        println!("event: {path} changed");
    }
    assert_eq!(cache.get(PATH).await?.get("token"), Some("v2"));
    println!("cached_refresh: ok");
    Ok(())
}
