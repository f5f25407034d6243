//! `/v1/acl/policy`: create/replace, get, delete and list policies.
//!
//! Policies are keyed by name, as in SPIKE since commit 82759994: the wire `id` field of get
//! and delete carries the name, and our responses fill `id` with the name too (SPIKE leaves it
//! empty; filling it is additive). Administration needs the superuser or a policy granting the
//! verb on `spike/system/acl`.
//!
//! SPIKE's `updatedAt` is the time of the latest put (`createdAt` survives an upsert).
//! spike-core's policy record has no such field, so Nexus stores it beside the record's own
//! fields under `updated_at` (RFC 3339); loading a record ignores fields it does not know.
//! Records written without it report their creation time.

use spike_core::path::validate_policy_name;
use spike_core::policy::{Permission, Policy, PolicySpec};
use spike_core::wire::WireResponse;
use spike_core::wire::policy::{self as wp, PolicyPermission};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Ctx, store_failure};
use crate::nexus::authz::{self, SYSTEM_ACL_PATH};
use crate::nexus::reply::Reply;

fn check<Resp: WireResponse + serde::Serialize>(
    ctx: &Ctx<'_>,
    wanted: Permission,
) -> Result<std::sync::Arc<crate::nexus::state::Unsealed>, Reply> {
    let unsealed = ctx.unsealed::<Resp>()?;
    let roots = &ctx.state.config().trust_roots;
    if authz::allowed(roots, &unsealed.policies(), ctx.caller, SYSTEM_ACL_PATH, wanted) {
        Ok(unsealed)
    } else {
        Err(Reply::denied::<Resp>())
    }
}

/// The stored bytes of `policy`, with its last-write time beside the record's fields.
pub(crate) fn record_bytes(policy: &Policy, updated_at: OffsetDateTime) -> Option<Vec<u8>> {
    let mut value = serde_json::to_value(policy).ok()?;
    let stamp = updated_at.format(&Rfc3339).ok()?;
    value.as_object_mut()?.insert(UPDATED_AT.to_owned(), stamp.into());
    serde_json::to_vec(&value).ok()
}

/// The last-write time kept in a stored record, if it has one.
pub(crate) fn stored_updated_at(bytes: &[u8]) -> Option<OffsetDateTime> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    OffsetDateTime::parse(value.get(UPDATED_AT)?.as_str()?, &Rfc3339).ok()
}

const UPDATED_AT: &str = "updated_at";

fn to_wire_policy(p: &Policy, updated_at: Option<OffsetDateTime>) -> wp::Policy {
    wp::Policy {
        id: p.name().to_owned(),
        name: p.name().to_owned(),
        spiffeid_pattern: p.spiffe_id_pattern().to_owned(),
        path_pattern: p.path_pattern().to_owned(),
        permissions: Some(p.permissions().iter().copied().map(PolicyPermission::from).collect()),
        created_at: p.created_at(),
        updated_at: updated_at.unwrap_or_else(|| p.created_at()),
    }
}

/// Creates or replaces the policy called `name` (keeps its id and creation time on replace).
pub fn put(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: wp::PolicyPutRequest = ctx.decode::<_, wp::PolicyPutResponse>()?;
        let bad = || Reply::bad_request::<wp::PolicyPutResponse>().at(req.name.clone());
        validate_policy_name(&req.name).map_err(|_| bad())?;
        let permissions: Vec<Permission> =
            req.permissions.clone().unwrap_or_default().into_iter().map(Permission::from).collect();
        let spec = PolicySpec {
            name: req.name.clone(),
            spiffe_id_pattern: req.spiffeid_pattern.clone(),
            path_pattern: req.path_pattern.clone(),
            permissions,
        };
        let unsealed = check::<wp::PolicyPutResponse>(ctx, Permission::Write)?;
        let store = unsealed.vault().policies();
        let existing = store
            .get(&req.name)
            .map_err(|e| store_failure::<wp::PolicyPutResponse>(&e))?
            .and_then(|bytes| serde_json::from_slice::<Policy>(&bytes).ok());
        let now = OffsetDateTime::now_utc();
        let policy = match existing {
            Some(old) => Policy::from_parts(old.id().to_owned(), spec, old.created_at()),
            None => Policy::from_parts(
                spike_core::policy::new_policy_id().map_err(|_| bad())?,
                spec,
                now,
            ),
        }
        .map_err(|e| {
            tracing::debug!(error = %e, "rejected policy");
            Reply::bad_request_because::<wp::PolicyPutResponse>(e.to_string()).at(req.name.clone())
        })?;
        let bytes = record_bytes(&policy, now).ok_or_else(bad)?;
        store.put(&req.name, &bytes).map_err(|e| store_failure::<wp::PolicyPutResponse>(&e))?;
        unsealed.reload_policies().map_err(|e| {
            tracing::error!(error = %e, "reloading policies failed");
            Reply::internal::<wp::PolicyPutResponse>()
        })?;
        let resp = wp::PolicyPutResponse { id: req.name.clone(), err: None };
        Ok(Reply::ok(&resp).at(req.name.clone()))
    };
    run().unwrap_or_else(|r| r)
}

/// Reads one policy by name (404 if there is none).
pub fn get(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: wp::PolicyGetRequest = ctx.decode::<_, wp::PolicyGetResponse>()?;
        validate_policy_name(&req.id).map_err(|_| Reply::bad_request::<wp::PolicyGetResponse>())?;
        let unsealed = check::<wp::PolicyGetResponse>(ctx, Permission::Read)?;
        let bytes = unsealed
            .vault()
            .policies()
            .get(&req.id)
            .map_err(|e| store_failure::<wp::PolicyGetResponse>(&e))?
            .ok_or_else(|| Reply::not_found::<wp::PolicyGetResponse>().at(req.id.clone()))?;
        let policy: Policy = serde_json::from_slice(&bytes)
            .map_err(|_| Reply::internal::<wp::PolicyGetResponse>())?;
        let wire = to_wire_policy(&policy, stored_updated_at(&bytes));
        let resp = wp::PolicyGetResponse { policy: wire, err: None };
        Ok(Reply::ok(&resp).at(req.id.clone()))
    };
    run().unwrap_or_else(|r| r)
}

/// Deletes one policy by name (404 if there is none).
pub fn delete(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: wp::PolicyDeleteRequest = ctx.decode::<_, wp::PolicyDeleteResponse>()?;
        validate_policy_name(&req.id)
            .map_err(|_| Reply::bad_request::<wp::PolicyDeleteResponse>())?;
        let unsealed = check::<wp::PolicyDeleteResponse>(ctx, Permission::Write)?;
        let existed = unsealed
            .vault()
            .policies()
            .delete(&req.id)
            .map_err(|e| store_failure::<wp::PolicyDeleteResponse>(&e))?;
        if !existed {
            return Err(Reply::not_found::<wp::PolicyDeleteResponse>().at(req.id.clone()));
        }
        unsealed.reload_policies().map_err(|_| Reply::internal::<wp::PolicyDeleteResponse>())?;
        Ok(Reply::ok(&wp::PolicyDeleteResponse::default()).at(req.id.clone()))
    };
    run().unwrap_or_else(|r| r)
}

/// Lists policies, filtered by exact pattern equality as SPIKE does (a non-empty SPIFFE ID
/// pattern filter wins over the path pattern filter).
pub fn list(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: wp::PolicyListRequest = ctx.decode::<_, wp::PolicyListResponse>()?;
        let unsealed = check::<wp::PolicyListResponse>(ctx, Permission::List)?;
        let policies =
            unsealed.load_policies().map_err(|_| Reply::internal::<wp::PolicyListResponse>())?;
        let items = policies
            .values()
            .filter(|p| {
                if !req.spiffeid_pattern.is_empty() {
                    p.spiffe_id_pattern() == req.spiffeid_pattern
                } else if !req.path_pattern.is_empty() {
                    p.path_pattern() == req.path_pattern
                } else {
                    true
                }
            })
            .map(|p| wp::PolicyListItem { id: p.name().to_owned(), name: p.name().to_owned() })
            .collect();
        Ok(Reply::ok(&wp::PolicyListResponse { policies: Some(items), err: None }))
    };
    run().unwrap_or_else(|r| r)
}
