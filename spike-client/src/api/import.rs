//! Moving from SPIKE (extension): the superuser-only import calls behind
//! `spike operator import-spike` (see [`spike_core::wire::import`]).

use serde::Serialize;
use spike_core::wire::import::{
    ImportCipherKeyRequest, ImportOutcome, ImportPolicyRequest, ImportResponse, ImportSecretRequest,
};
use spike_core::wire::{self, Route};

use crate::client::{Idempotency, Spike, status_error};
use crate::error::{Error, Result};

impl Spike {
    /// Writes one secret with its whole history (or, with `check`, says what a write would
    /// do). A refusal (invalid, or a conflict without `force`) is [`Error::ImportRefused`]
    /// with Nexus's reason.
    pub async fn import_secret(&self, request: &ImportSecretRequest) -> Result<ImportOutcome> {
        self.import(Route::ImportSecret, request).await.map(|(outcome, _)| outcome)
    }

    /// Writes one policy with its times (or, with `check`, says what a write would do).
    pub async fn import_policy(&self, request: &ImportPolicyRequest) -> Result<ImportOutcome> {
        self.import(Route::ImportPolicy, request).await.map(|(outcome, _)| outcome)
    }

    /// Stores (or retires) the legacy cipher key. Also returns how many ciphertexts the
    /// answering Nexus opened with the legacy key since it started.
    pub async fn import_cipher_key(
        &self,
        request: &ImportCipherKeyRequest,
    ) -> Result<(ImportOutcome, u64)> {
        self.import(Route::ImportCipherKey, request)
            .await
            .map(|(outcome, decrypts)| (outcome, decrypts.unwrap_or(0)))
    }

    /// Sends one import request. Imports are idempotent (the same content twice is
    /// "unchanged"), so transient failures are retried.
    async fn import<Req: Serialize>(
        &self,
        route: Route,
        request: &Req,
    ) -> Result<(ImportOutcome, Option<u64>)> {
        let body = wire::encode(request)
            .map_err(|e| Error::Protocol(format!("cannot encode the import request: {e}")))?;
        let raw = self.send(route, &body, "application/json", Idempotency::Idempotent).await?;
        let decoded = wire::decode::<ImportResponse>(&raw.body).ok();
        if raw.status != 200 {
            return Err(match decoded.and_then(|r| r.reason) {
                Some(reason) if matches!(raw.status, 400 | 409) => {
                    Error::ImportRefused { status: raw.status, reason }
                }
                _ => status_error(raw.status, &raw.body, raw.retry_after),
            });
        }
        let resp = decoded
            .ok_or_else(|| Error::Protocol("Nexus's import answer does not decode".into()))?;
        if let Some(code) = resp.err {
            return Err(Error::Server { status: 200, code: code.as_str().to_owned() });
        }
        let outcome = resp
            .outcome
            .ok_or_else(|| Error::Protocol("Nexus's import answer has no outcome".into()))?;
        Ok((outcome, resp.legacy_decrypts))
    }
}
