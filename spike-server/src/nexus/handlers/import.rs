//! `/v1/operator/import/{secret,policy,cipher-key}` (extension): what `spike operator
//! import-spike` sends after reading a SPIKE Nexus's store (see
//! [`spike_core::wire::import`]). Superuser only.
//!
//! Order, as in every handler: decode and validate (400), authorise (401), then act. A secret
//! is written atomically with its history; a conflict (the target holds other content and
//! `force` is not set) is 409 `import_conflict` and writes nothing. With `check`, nothing is
//! written and the answer says what a write would do. Refusals carry a `reason` that names
//! the field; never a value.

use spike_core::path::{SecretPath, validate_policy_name};
use spike_core::policy::{Permission, Policy, PolicySpec};
use spike_core::secret::{DataKey, KEY_LEN, SecretValues};
use spike_core::store::{Imported, ImportedSecret, ImportedVersion};
use spike_core::wire::import::{
    IMPORT_CONFLICT, ImportCipherKeyRequest, ImportOutcome, ImportPolicyRequest, ImportResponse,
    ImportSecretRequest,
};
use spike_core::wire::{ErrorCode, SecretBytes};
use zeroize::Zeroize;

use super::policy::{record_bytes, stored_updated_at};
use super::{Ctx, store_failure};
use crate::nexus::reply::Reply;
use crate::nexus::state::Unsealed;

/// 400 with `reason`.
fn invalid(reason: impl Into<String>) -> Reply {
    let body = ImportResponse {
        err: Some(ErrorCode::ApiBadRequest),
        reason: Some(reason.into()),
        ..Default::default()
    };
    let mut reply = Reply::ok(&body);
    reply.status = 400;
    reply.code = Some(ErrorCode::ApiBadRequest);
    reply
}

/// 409 `import_conflict` with `reason`.
fn conflict(reason: String) -> Reply {
    let code = ErrorCode::Other(IMPORT_CONFLICT.into());
    let body =
        ImportResponse { err: Some(code.clone()), reason: Some(reason), ..Default::default() };
    let mut reply = Reply::ok(&body);
    reply.status = 409;
    reply.code = Some(code);
    reply
}

/// The superuser check and the unsealed store.
fn authorise(ctx: &Ctx<'_>) -> Result<std::sync::Arc<Unsealed>, Reply> {
    if !ctx.state.config().trust_roots.is_superuser(ctx.caller) {
        return Err(Reply::denied::<ImportResponse>());
    }
    ctx.unsealed::<ImportResponse>()
}

fn outcome_of(imported: Imported) -> ImportOutcome {
    match imported {
        Imported::Created => ImportOutcome::Created,
        Imported::Replaced => ImportOutcome::Replaced,
        Imported::Unchanged => ImportOutcome::Unchanged,
        Imported::Conflict => ImportOutcome::Conflict,
    }
}

fn answer(outcome: ImportOutcome) -> Reply {
    Reply::ok(&ImportResponse { outcome: Some(outcome), ..Default::default() })
}

/// Imports one secret with its whole history.
pub fn secret(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let mut req: ImportSecretRequest = ctx.decode::<_, ImportResponse>()?;
        let path = SecretPath::parse(&req.path)
            .map_err(|e| invalid(format!("path {:?}: {e}", req.path)))?;
        let versions = req
            .versions
            .iter_mut()
            .map(|v| ImportedVersion {
                version: v.version,
                values: v.data.take().unwrap_or_else(SecretValues::new),
                created_time: v.created_time,
                deleted_time: v.deleted_time,
            })
            .collect();
        let secret = ImportedSecret {
            current_version: req.current_version,
            oldest_version: req.oldest_version,
            max_versions: req.max_versions,
            created_time: req.created_time,
            updated_time: req.updated_time,
            versions,
        };
        let unsealed = authorise(ctx)?;
        let imported =
            unsealed.vault().secrets().import(&path, &secret, req.force, req.check).map_err(
                |e| match e {
                    spike_core::error::StoreError::Invalid(why) => {
                        invalid(format!("secret {:?}: {why}", req.path))
                    }
                    other => store_failure::<ImportResponse>(&other),
                },
            )?;
        if imported == Imported::Conflict && !req.check {
            return Err(conflict(format!(
                "secret {:?} exists with other content; re-run with --force to replace it",
                req.path
            ))
            .at(req.path.clone()));
        }
        Ok(answer(outcome_of(imported)).at(req.path.clone()))
    };
    run().unwrap_or_else(|r| r)
}

/// Imports one policy with its times (keyed by name, as policies are here).
pub fn policy(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: ImportPolicyRequest = ctx.decode::<_, ImportResponse>()?;
        validate_policy_name(&req.name)
            .map_err(|e| invalid(format!("policy name {:?}: {e}", req.name)))?;
        let permissions = req
            .permissions
            .iter()
            .map(|p| Permission::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("policy {:?}: {e}", req.name)))?;
        let spec = PolicySpec {
            name: req.name.clone(),
            spiffe_id_pattern: req.spiffeid_pattern.clone(),
            path_pattern: req.path_pattern.clone(),
            permissions,
        };
        // Validate before authorising, with a placeholder id (the stored id is the name's).
        Policy::from_parts(req.name.clone(), spec.clone(), req.created_at)
            .map_err(|e| invalid(format!("policy {:?}: {e}", req.name)))?;
        let unsealed = authorise(ctx)?;
        let store = unsealed.vault().policies();
        let existing = store.get(&req.name).map_err(|e| store_failure::<ImportResponse>(&e))?;
        let outcome = match &existing {
            None => ImportOutcome::Created,
            Some(bytes) => {
                let old: Option<Policy> = serde_json::from_slice(bytes).ok();
                let same = old.is_some_and(|old| {
                    Policy::from_parts(old.id().to_owned(), spec.clone(), req.created_at)
                        .is_ok_and(|wanted| wanted == old)
                        && stored_updated_at(bytes) == Some(req.updated_at)
                });
                if same {
                    ImportOutcome::Unchanged
                } else if req.force {
                    ImportOutcome::Replaced
                } else {
                    ImportOutcome::Conflict
                }
            }
        };
        if req.check || outcome == ImportOutcome::Unchanged {
            return Ok(answer(outcome).at(req.name.clone()));
        }
        if outcome == ImportOutcome::Conflict {
            return Err(conflict(format!(
                "policy {:?} exists with other content; re-run with --force to replace it",
                req.name
            ))
            .at(req.name.clone()));
        }
        let id = match existing.as_ref().and_then(|b| serde_json::from_slice::<Policy>(b).ok()) {
            Some(old) => old.id().to_owned(),
            None => spike_core::policy::new_policy_id()
                .map_err(|_| Reply::internal::<ImportResponse>())?,
        };
        let policy = Policy::from_parts(id, spec, req.created_at)
            .map_err(|e| invalid(format!("policy {:?}: {e}", req.name)))?;
        let bytes =
            record_bytes(&policy, req.updated_at).ok_or_else(Reply::internal::<ImportResponse>)?;
        store.put(&req.name, &bytes).map_err(|e| store_failure::<ImportResponse>(&e))?;
        unsealed.reload_policies().map_err(|e| {
            tracing::error!(error = %e, "reloading policies after an import failed");
            Reply::internal::<ImportResponse>()
        })?;
        Ok(answer(outcome).at(req.name.clone()))
    };
    run().unwrap_or_else(|r| r)
}

/// Stores SPIKE's root key as the legacy cipher key, or retires it.
pub fn cipher_key(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: ImportCipherKeyRequest = ctx.decode::<_, ImportResponse>()?;
        let key = match (&req.key, req.retire) {
            (Some(_), true) => return Err(invalid("give either a key or retire, not both")),
            (None, false) => return Err(invalid("no key given (or set retire to remove it)")),
            (None, true) => None,
            (Some(bytes), false) => Some(to_key(bytes)?),
        };
        let unsealed = authorise(ctx)?;
        let vault = unsealed.vault();
        let outcome = match key {
            None => {
                let existed = vault
                    .retire_legacy_cipher_key(req.check)
                    .map_err(|e| store_failure::<ImportResponse>(&e))?;
                if existed { ImportOutcome::Retired } else { ImportOutcome::Unchanged }
            }
            Some(key) => {
                let imported = vault
                    .set_legacy_cipher_key(&key, req.force, req.check)
                    .map_err(|e| store_failure::<ImportResponse>(&e))?;
                if imported == Imported::Conflict && !req.check {
                    return Err(conflict(
                        "another legacy cipher key is stored (from an earlier import of another \
                         SPIKE store); re-run with --force to replace it, which makes that \
                         store's ciphertexts unreadable"
                            .into(),
                    ));
                }
                outcome_of(imported)
            }
        };
        let body = ImportResponse {
            outcome: Some(outcome),
            legacy_decrypts: Some(ctx.state.metrics.legacy_decrypts()),
            ..Default::default()
        };
        Ok(Reply::ok(&body))
    };
    run().unwrap_or_else(|r| r)
}

fn to_key(bytes: &SecretBytes) -> Result<DataKey, Reply> {
    let mut raw: [u8; KEY_LEN] = bytes
        .expose_secret()
        .try_into()
        .map_err(|_| invalid(format!("the key must be {KEY_LEN} bytes")))?;
    let key = DataKey::from_bytes(&mut raw);
    raw.zeroize();
    Ok(key)
}
