//! Secrets: put, get, list, delete, undelete, destroy, metadata.

use std::collections::BTreeMap;

use spike_core::path::SecretPath;
use spike_core::secret::SecretValues;
use spike_core::wire::Route;
use spike_core::wire::secrets::*;

use crate::client::{Idempotency, Spike};
use crate::error::{Error, Result};

/// Validates a path locally with the same rules as Nexus, so mistakes fail fast and clearly.
fn checked(path: &str) -> Result<()> {
    SecretPath::parse(path)
        .map(|_| ())
        .map_err(|e| Error::InvalidInput { what: "secret path".into(), reason: e.to_string() })
}

/// A secret's metadata as Nexus reports it.
pub type SecretMetadata = SecretMetadataResponse;

impl Spike {
    /// Writes a new version of the secret at `path`.
    pub async fn put_secret(&self, path: &str, values: SecretValues) -> Result<()> {
        self.put_secret_with(path, values, None, None).await
    }

    /// Writes a new version only if the current version is `expected_version` (0: only if
    /// the secret does not exist yet). A lost race is [`Error::Conflict`].
    pub async fn put_secret_cas(
        &self,
        path: &str,
        values: SecretValues,
        expected_version: u64,
    ) -> Result<()> {
        self.put_secret_with(path, values, Some(expected_version), None).await
    }

    /// Writes a new version with optional check-and-set and custom (non-secret) metadata.
    pub async fn put_secret_with(
        &self,
        path: &str,
        values: SecretValues,
        cas: Option<u64>,
        metadata: Option<BTreeMap<String, String>>,
    ) -> Result<()> {
        checked(path)?;
        if values.is_empty() {
            return Err(Error::InvalidInput {
                what: "secret values".into(),
                reason: "give at least one key=value pair".into(),
            });
        }
        let req = SecretPutRequest { path: path.into(), values: Some(values), cas, metadata };
        let _: SecretPutResponse = self.call(Route::SecretPut, &req, Idempotency::Once).await?;
        Ok(())
    }

    /// Reads the current version of the secret at `path`.
    pub async fn get_secret(&self, path: &str) -> Result<SecretValues> {
        self.get_secret_version(path, 0).await
    }

    /// Reads version `version` (0: the current one).
    pub async fn get_secret_version(&self, path: &str, version: u64) -> Result<SecretValues> {
        checked(path)?;
        let req = SecretGetRequest { path: path.into(), version };
        let resp: SecretGetResponse =
            self.call(Route::SecretGet, &req, Idempotency::Idempotent).await?;
        resp.data.ok_or_else(|| Error::Protocol("a get answer without data".into()))
    }

    /// Lists the secret paths this identity may see.
    pub async fn list_secrets(&self) -> Result<Vec<String>> {
        let resp: std::result::Result<SecretListResponse, Error> =
            self.call(Route::SecretList, &SecretListRequest {}, Idempotency::Idempotent).await;
        match resp {
            Ok(r) => Ok(r.keys.unwrap_or_default()),
            // spike-sdk-go turns a 404 into an empty list; so do we.
            Err(Error::NotFound) => Ok(vec![]),
            Err(e) => Err(e),
        }
    }

    /// Soft-deletes `versions` (empty: the current version).
    pub async fn delete_secret(&self, path: &str, versions: &[u64]) -> Result<()> {
        checked(path)?;
        let req = SecretDeleteRequest { path: path.into(), versions: Some(versions.to_vec()) };
        let _: SecretDeleteResponse =
            self.call(Route::SecretDelete, &req, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// Restores soft-deleted `versions` (empty: the latest deleted version).
    pub async fn undelete_secret(&self, path: &str, versions: &[u64]) -> Result<()> {
        checked(path)?;
        let req = SecretUndeleteRequest { path: path.into(), versions: Some(versions.to_vec()) };
        let _: SecretUndeleteResponse =
            self.call(Route::SecretUndelete, &req, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// Permanently removes `versions` (empty: the current version). Cannot be undone.
    pub async fn destroy_secret(&self, path: &str, versions: &[u64]) -> Result<()> {
        checked(path)?;
        let req = SecretDestroyRequest { path: path.into(), versions: Some(versions.to_vec()) };
        let _: SecretDestroyResponse =
            self.call(Route::SecretDestroy, &req, Idempotency::Idempotent).await?;
        Ok(())
    }

    /// The secret's versions and summary.
    pub async fn secret_metadata(&self, path: &str) -> Result<SecretMetadata> {
        self.secret_metadata_at(path, 0).await
    }

    /// Like [`Spike::secret_metadata`], sending SPIKE's `version` field (0: none). Nexus
    /// answers with the whole secret's metadata either way, as SPIKE's does.
    pub async fn secret_metadata_at(&self, path: &str, version: u64) -> Result<SecretMetadata> {
        checked(path)?;
        let req = SecretMetadataRequest { path: path.into(), version };
        self.call(Route::SecretMetadataGet, &req, Idempotency::Idempotent).await
    }
}
