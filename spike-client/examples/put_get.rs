//! Write a secret, read it back, list, and look at its versions.
//!
//! ```sh
//! spike dev                 # in one shell
//! source .spike-dev/env     # in another
//! cargo run -p spike-client --example put_get
//! ```
//!
//! `Spike::new()` reads SPIFFE_ENDPOINT_SOCKET (the Workload API handing out this process's
//! SPIFFE identity) and SPIKE_NEXUS_API_URL.

use spike_client::spike_core::secret::SecretValues;
use spike_client::{Error, Spike};

const PATH: &str = "examples/put-get/db";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let spike = Spike::new().await?;

    let v1: SecretValues = [("username", "app"), ("password", "first")].into_iter().collect();
    spike.put_secret(PATH, v1).await?;
    let v2: SecretValues = [("username", "app"), ("password", "second")].into_iter().collect();
    spike.put_secret(PATH, v2).await?;

    let current = spike.get_secret(PATH).await?;
    // Debug never shows values: `SecretValues([REDACTED])`.
    println!("read {PATH}: {} keys {current:?}", current.len());
    println!("username = {}", current.get("username").unwrap_or_default());

    let first = spike.get_secret_version(PATH, 1).await?;
    assert_eq!(first.get("password"), Some("first"));

    let meta = spike.secret_metadata(PATH).await?;
    println!(
        "current version {}, keeping at most {}",
        meta.metadata.current_version, meta.metadata.max_versions
    );

    let paths = spike.list_secrets().await?;
    println!("this identity sees {} secret path(s)", paths.len());

    match spike.get_secret("examples/put-get/missing").await {
        Err(Error::NotFound) => println!("a missing secret is Error::NotFound"),
        other => println!("unexpected: {:?}", other.map(|v| v.len())),
    }
    println!("put_get: ok");
    Ok(())
}
