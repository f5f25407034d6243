//! Policy administration (superuser): let a workload read one subtree, inspect, remove.
//!
//! ```sh
//! source .spike-dev/env     # after `spike dev`
//! cargo run -p spike-client --example policy_admin
//! ```
//!
//! Patterns are regular expressions matched against the whole SPIFFE ID and the whole path.

use spike_client::spike_core::policy::Permission;
use spike_client::{Error, Spike};

const NAME: &str = "examples-billing-read";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let spike = Spike::new().await?;

    spike
        .create_policy(
            NAME,
            r"^spiffe://spike\.ist/workload/billing$",
            r"^tenants/billing/.*$",
            &[Permission::Read, Permission::List],
        )
        .await?;
    println!("created policy {NAME}");

    let policy = spike.get_policy(NAME).await?;
    println!(
        "{}: {} may {:?} on {}",
        policy.name,
        policy.spiffeid_pattern,
        policy.permissions.unwrap_or_default(),
        policy.path_pattern
    );

    let names: Vec<String> =
        spike.list_policies(None, None).await?.into_iter().map(|p| p.name).collect();
    assert!(names.iter().any(|n| n == NAME));
    println!("{} policies in total", names.len());

    spike.delete_policy(NAME).await?;
    match spike.get_policy(NAME).await {
        Err(Error::NotFound) => println!("deleted policy {NAME}"),
        other => println!("unexpected: {:?}", other.map(|p| p.name)),
    }
    println!("policy_admin: ok");
    Ok(())
}
