//! `/v1/store/secrets` and `/v1/store/secrets/metadata`.

use spike_core::path::SecretPath;
use spike_core::policy::{Permission, PolicySet};
use spike_core::store::PutOptions;
use spike_core::wire::secrets::*;

use super::{Ctx, store_failure};
use crate::nexus::authz::{self, SYSTEM_SECRET_PATH};
use crate::nexus::reply::Reply;

fn path_for<Resp>(raw: &str, write: bool) -> Result<SecretPath, Reply>
where
    Resp: spike_core::wire::WireResponse + serde::Serialize,
{
    let parsed = if write { SecretPath::parse_for_write(raw) } else { SecretPath::parse(raw) };
    parsed.map_err(|e| {
        tracing::debug!(error = %e, "rejected secret path");
        Reply::bad_request::<Resp>()
    })
}

fn check<Resp>(ctx: &Ctx<'_>, path: &SecretPath, wanted: Permission) -> Result<(), Reply>
where
    Resp: spike_core::wire::WireResponse + serde::Serialize,
{
    let unsealed = ctx.unsealed::<Resp>()?;
    authorise::<Resp>(ctx, &unsealed.policies(), path, wanted)
}

/// Whether `policies` let the caller use `path` as `wanted`.
fn authorise<Resp>(
    ctx: &Ctx<'_>,
    policies: &PolicySet,
    path: &SecretPath,
    wanted: Permission,
) -> Result<(), Reply>
where
    Resp: spike_core::wire::WireResponse + serde::Serialize,
{
    let roots = &ctx.state.config().trust_roots;
    if authz::allowed(roots, policies, ctx.caller, path.as_str(), wanted) {
        Ok(())
    } else {
        Err(Reply::denied::<Resp>().at(path.as_str()))
    }
}

/// Put: creates version N+1 (with optional `cas` and custom `metadata`).
pub fn put(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: SecretPutRequest = ctx.decode::<_, SecretPutResponse>()?;
        let path = path_for::<SecretPutResponse>(&req.path, true)?;
        let Some(values) = req.values.as_ref().filter(|v| !v.is_empty()) else {
            return Err(Reply::bad_request::<SecretPutResponse>().at(path.as_str()));
        };
        if !values.keys().all(is_valid_value_key) {
            return Err(Reply::bad_request::<SecretPutResponse>().at(path.as_str()));
        }
        check::<SecretPutResponse>(ctx, &path, Permission::Write)?;
        let mut options = PutOptions::new();
        if let Some(cas) = req.cas {
            options = options.cas(cas);
        }
        if let Some(meta) = req.metadata.clone() {
            options = options.custom_metadata(meta);
        }
        let unsealed = ctx.unsealed::<SecretPutResponse>()?;
        unsealed
            .vault()
            .secrets()
            .put(&path, values, &options)
            .map_err(|e| store_failure::<SecretPutResponse>(&e).at(path.as_str()))?;
        unsealed.rotate_keyring_if_due();
        Ok(Reply::ok(&SecretPutResponse::default()).at(path.as_str()))
    };
    run().unwrap_or_else(|r| r)
}

/// Get: the latest version, or `version` when non-zero.
pub fn get(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let (path, version) = get_request(ctx)?;
        check::<SecretGetResponse>(ctx, &path, Permission::Read)?;
        let unsealed = ctx.unsealed::<SecretGetResponse>()?;
        let read = unsealed.vault().secrets().get_versioned(&path, version);
        Ok(get_reply(&path, read))
    };
    run().unwrap_or_else(|r| r)
}

/// [`get`] for a store whose reads wait on the network (PostgreSQL), run on the request's own
/// task: the same checks in the same order and the same store read, awaited instead of held on
/// a blocking thread. `None` when authorising would read the store first (a policy refresh is
/// due, see `Unsealed::policies_if_fresh`): then run [`get`] on a blocking thread instead.
pub async fn get_async(ctx: &Ctx<'_>) -> Option<Reply> {
    let (path, version) = match get_request(ctx) {
        Ok(request) => request,
        Err(refused) => return Some(refused),
    };
    let unsealed = match ctx.unsealed::<SecretGetResponse>() {
        Ok(unsealed) => unsealed,
        Err(refused) => return Some(refused),
    };
    let policies = unsealed.policies_if_fresh()?;
    if let Err(refused) = authorise::<SecretGetResponse>(ctx, &policies, &path, Permission::Read) {
        return Some(refused);
    }
    let read = unsealed.vault().secrets().get_versioned_async(&path, version).await;
    Some(get_reply(&path, read))
}

/// A GET request's path and version (`None`: the current one), or the refusal of a malformed one.
fn get_request(ctx: &Ctx<'_>) -> Result<(SecretPath, Option<u64>), Reply> {
    let req: SecretGetRequest = ctx.decode::<_, SecretGetResponse>()?;
    let path = path_for::<SecretGetResponse>(&req.path, false)?;
    Ok((path, (req.version != 0).then_some(req.version)))
}

/// The answer to a GET of `path` that read `read`.
fn get_reply(
    path: &SecretPath,
    read: Result<(u64, spike_core::secret::SecretValues), spike_core::error::StoreError>,
) -> Reply {
    match read {
        Ok((_, values)) => {
            let resp = SecretGetResponse { data: Some(values), err: None };
            Reply::ok(&resp).at(path.as_str())
        }
        Err(e) => store_failure::<SecretGetResponse>(&e).at(path.as_str()),
    }
}

/// What delete, undelete and destroy share: decode, validate, authorise `write`.
fn versions_op<Req, Resp>(
    ctx: &Ctx<'_>,
    parts: impl Fn(&Req) -> (&str, &[u64]),
    op: impl Fn(
        &spike_core::store::SecretStore,
        &SecretPath,
        &[u64],
    ) -> Result<Vec<u64>, spike_core::error::StoreError>,
) -> Reply
where
    Req: for<'de> serde::Deserialize<'de>,
    Resp: spike_core::wire::WireResponse + serde::Serialize + Default,
{
    let run = || -> Result<Reply, Reply> {
        let req: Req = ctx.decode::<_, Resp>()?;
        let (raw_path, versions) = parts(&req);
        let path = path_for::<Resp>(raw_path, true)?;
        check::<Resp>(ctx, &path, spike_core::policy::Permission::Write)?;
        let unsealed = ctx.unsealed::<Resp>()?;
        op(unsealed.vault().secrets(), &path, versions)
            .map_err(|e| store_failure::<Resp>(&e).at(path.as_str()))?;
        Ok(Reply::ok(&Resp::default()).at(path.as_str()))
    };
    run().unwrap_or_else(|r| r)
}

/// Soft-deletes the given versions (empty: the current one).
pub fn delete(ctx: &Ctx<'_>) -> Reply {
    versions_op::<SecretDeleteRequest, SecretDeleteResponse>(
        ctx,
        |r| (&r.path, r.versions.as_deref().unwrap_or_default()),
        |s, p, v| s.delete(p, v),
    )
}

/// Restores soft-deleted versions (empty: the latest deleted one). As in SPIKE, a request that
/// restores nothing (every named version live or absent) is 404.
pub fn undelete(ctx: &Ctx<'_>) -> Reply {
    versions_op::<SecretUndeleteRequest, SecretUndeleteResponse>(
        ctx,
        |r| (&r.path, r.versions.as_deref().unwrap_or_default()),
        |s, p, v| {
            let changed = s.undelete(p, v)?;
            if changed.is_empty() {
                Err(spike_core::error::StoreError::NotFound)
            } else {
                Ok(changed)
            }
        },
    )
}

/// Permanently removes the given versions (spike-rs extension `action=destroy`).
pub fn destroy(ctx: &Ctx<'_>) -> Reply {
    versions_op::<SecretDestroyRequest, SecretDestroyResponse>(
        ctx,
        |r| (&r.path, r.versions.as_deref().unwrap_or_default()),
        |s, p, v| s.destroy(p, v),
    )
}

/// Lists secret paths. Superusers and holders of `list` on `spike/system/secret` see every
/// path (SPIKE); anyone else sees only the paths a policy grants them `list` on, so a listing
/// never reveals names the caller has no rights to (a spike-rs hardening).
pub fn list(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let _: SecretListRequest = ctx.decode::<_, SecretListResponse>()?;
        let unsealed = ctx.unsealed::<SecretListResponse>()?;
        let roots = &ctx.state.config().trust_roots;
        // The per-path filter below reads policies directly; a lite workload must not get that
        // far (SPIKE refuses it every secret route, whatever a policy says).
        if !authz::may_use_store(roots, ctx.caller) {
            return Err(Reply::denied::<SecretListResponse>());
        }
        let policies = unsealed.policies();
        let see_all =
            authz::allowed(roots, &policies, ctx.caller, SYSTEM_SECRET_PATH, Permission::List);
        let paths = unsealed
            .vault()
            .secrets()
            .list()
            .map_err(|e| store_failure::<SecretListResponse>(&e))?;
        let keys: Vec<String> = paths
            .into_iter()
            .filter(|p| {
                see_all || policies.decide(ctx.caller, p.as_str(), Permission::List).is_allowed()
            })
            .map(|p| p.as_str().to_owned())
            .collect();
        if keys.is_empty() && !see_all {
            return Err(Reply::denied::<SecretListResponse>());
        }
        Ok(Reply::ok(&SecretListResponse { keys: Some(keys), err: None }))
    };
    run().unwrap_or_else(|r| r)
}

/// Metadata of a secret: every retained version and the summary.
pub fn metadata(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: SecretMetadataRequest = ctx.decode::<_, SecretMetadataResponse>()?;
        let path = path_for::<SecretMetadataResponse>(&req.path, false)?;
        check::<SecretMetadataResponse>(ctx, &path, Permission::Read)?;
        let unsealed = ctx.unsealed::<SecretMetadataResponse>()?;
        let not_found = || Reply::not_found::<SecretMetadataResponse>().at(path.as_str());
        let meta = unsealed
            .vault()
            .secrets()
            .metadata(&path)
            .map_err(|e| store_failure::<SecretMetadataResponse>(&e).at(path.as_str()))?;
        // SPIKE: the named (or current) version must exist and be live.
        let wanted = if req.version == 0 { meta.current_version } else { req.version };
        match meta.versions.get(&wanted) {
            Some(v) if v.deleted_time.is_none() => {}
            _ => return Err(not_found()),
        }
        let versions = meta
            .versions
            .values()
            .map(|v| {
                let info = SecretVersionInfo {
                    created_time: v.created_time,
                    version: v.version,
                    deleted_time: v.deleted_time,
                };
                (v.version, info)
            })
            .collect();
        let resp = SecretMetadataResponse {
            versions: Some(versions),
            metadata: SecretMetadataContent {
                current_version: meta.current_version,
                oldest_version: meta.oldest_version,
                created_time: meta.created_time,
                updated_time: meta.updated_time,
                max_versions: u64::from(meta.max_versions),
            },
            err: None,
        };
        Ok(Reply::ok(&resp).at(path.as_str()))
    };
    run().unwrap_or_else(|r| r)
}
