//! Policies: create (or replace), get, list, delete. Policies are keyed by name.

use spike_core::policy::Permission;
use spike_core::wire::Route;
use spike_core::wire::policy::*;

use crate::client::{Idempotency, Spike};
use crate::error::{Error, Result};

fn checked_name(name: &str) -> Result<()> {
    spike_core::path::validate_policy_name(name)
        .map_err(|e| Error::InvalidInput { what: "policy name".into(), reason: e.to_string() })
}

impl Spike {
    /// Creates or replaces the policy `name`: SPIFFE IDs matching `spiffe_id_pattern` (a
    /// regular expression matched against the whole ID) get `permissions` on paths matching
    /// `path_pattern` (matched against the whole path).
    pub async fn create_policy(
        &self,
        name: &str,
        spiffe_id_pattern: &str,
        path_pattern: &str,
        permissions: &[Permission],
    ) -> Result<()> {
        checked_name(name)?;
        let req = PolicyPutRequest {
            name: name.into(),
            spiffeid_pattern: spiffe_id_pattern.into(),
            path_pattern: path_pattern.into(),
            permissions: Some(permissions.iter().copied().map(PolicyPermission::from).collect()),
        };
        let _: PolicyPutResponse =
            self.call(Route::PolicyPut, &req, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// Reads the policy `name`.
    pub async fn get_policy(&self, name: &str) -> Result<Policy> {
        checked_name(name)?;
        let req = PolicyGetRequest { id: name.into() };
        let resp: PolicyGetResponse =
            self.call(Route::PolicyGet, &req, Idempotency::Idempotent).await?;
        Ok(resp.policy)
    }

    /// Lists policies (names), optionally only those whose SPIFFE ID pattern or path pattern
    /// equals the given string.
    pub async fn list_policies(
        &self,
        spiffe_id_pattern: Option<&str>,
        path_pattern: Option<&str>,
    ) -> Result<Vec<PolicyListItem>> {
        let req = PolicyListRequest {
            spiffeid_pattern: spiffe_id_pattern.unwrap_or_default().into(),
            path_pattern: path_pattern.unwrap_or_default().into(),
        };
        match self
            .call::<_, PolicyListResponse>(Route::PolicyList, &req, Idempotency::Idempotent)
            .await
        {
            Ok(r) => Ok(r.policies.unwrap_or_default()),
            Err(Error::NotFound) => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    /// Deletes the policy `name`.
    pub async fn delete_policy(&self, name: &str) -> Result<()> {
        checked_name(name)?;
        let req = PolicyDeleteRequest { id: name.into() };
        let _: PolicyDeleteResponse =
            self.call(Route::PolicyDelete, &req, Idempotency::Idempotent).await?;
        Ok(())
    }
}
