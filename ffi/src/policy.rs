//! Policies: create (or replace), list and delete. Permissions are a bit set of the
//! `SPIKE_PERMISSION_*` constants.

use std::ffi::c_char;

use ::spike_client::spike_core::policy::Permission;

use crate::client::spike_client;
use crate::error::{Fault, spike_result};
use crate::ffi::{try_ref, try_str};
use crate::panic::{catch_new, catch_result};
use crate::slice::{StrList, spike_str_list};

/// Permission to read secret values and metadata (SPIKE's `"read"`).
pub const SPIKE_PERMISSION_READ: u32 = 1;
/// Permission to create, update, delete and undelete secrets (`"write"`).
pub const SPIKE_PERMISSION_WRITE: u32 = 1 << 1;
/// Permission to list secret paths (`"list"`).
pub const SPIKE_PERMISSION_LIST: u32 = 1 << 2;
/// Permission to use the encryption-as-a-service cipher API (`"execute"`).
pub const SPIKE_PERMISSION_EXECUTE: u32 = 1 << 3;
/// Every permission, present and future (`"super"`).
pub const SPIKE_PERMISSION_SUPER: u32 = 1 << 4;

const BITS: [(u32, Permission); 5] = [
    (SPIKE_PERMISSION_READ, Permission::Read),
    (SPIKE_PERMISSION_WRITE, Permission::Write),
    (SPIKE_PERMISSION_LIST, Permission::List),
    (SPIKE_PERMISSION_EXECUTE, Permission::Execute),
    (SPIKE_PERMISSION_SUPER, Permission::Super),
];

fn permissions(bits: u32) -> Result<Vec<Permission>, Fault> {
    let known = BITS.iter().fold(0, |acc, (b, _)| acc | b);
    if bits & !known != 0 {
        return Err(Fault::invalid(format!(
            "permissions 0x{bits:x} has unknown bits 0x{:x}; use SPIKE_PERMISSION_* flags",
            bits & !known
        )));
    }
    if bits == 0 {
        return Err(Fault::invalid("permissions is 0; grant at least one SPIKE_PERMISSION_*"));
    }
    Ok(BITS.iter().filter(|(b, _)| bits & b != 0).map(|(_, p)| *p).collect())
}

/// Creates or replaces the policy `name`: SPIFFE IDs matching `spiffe_id_pattern` (a regular
/// expression over the whole ID) get `permissions` (`SPIKE_PERMISSION_*` flags or'ed
/// together) on secret paths matching `path_pattern` (over the whole path).
///
/// # Safety
///
/// `client` must be NULL or a live client; the strings NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_create_policy(
    client: *const spike_client,
    name: *const c_char,
    spiffe_id_pattern: *const c_char,
    path_pattern: *const c_char,
    permissions: u32,
) -> spike_result {
    catch_result(|| {
        let client = try_ref!(client);
        let name = try_str!(name);
        let spiffe_id_pattern = try_str!(spiffe_id_pattern);
        let path_pattern = try_str!(path_pattern);
        let perms = self::permissions(permissions)?;
        client.run(|s| s.create_policy(name, spiffe_id_pattern, path_pattern, &perms))?;
        Ok(())
    })
}

/// Lists the names of all policies (empty when there are none).
///
/// On success `*out` is a list the caller owns and must free with `spike_str_list_free`.
///
/// # Safety
///
/// `client` must be NULL or a live client; `out` NULL or a writable `spike_str_list *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_list_policies(
    client: *const spike_client,
    out: *mut *mut spike_str_list,
) -> spike_result {
    catch_new!(out, {
        let client = try_ref!(client);
        let items = client.run(|s| s.list_policies(None, None))?;
        StrList::from_strings(items.iter().map(|p| p.name.as_str()))
    })
}

/// Deletes the policy `name`. `SPIKE_RESULT_NOT_FOUND` if there is none.
///
/// # Safety
///
/// `client` must be NULL or a live client; `name` NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn spike_client_delete_policy(
    client: *const spike_client,
    name: *const c_char,
) -> spike_result {
    catch_result(|| {
        let client = try_ref!(client);
        let name = try_str!(name);
        client.run(|s| s.delete_policy(name))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_bits_map_to_spike_permissions_and_unknown_bits_are_refused() {
        assert_eq!(
            permissions(SPIKE_PERMISSION_READ | SPIKE_PERMISSION_LIST).unwrap(),
            vec![Permission::Read, Permission::List]
        );
        assert_eq!(permissions(0).unwrap_err().code, spike_result::InvalidArgument);
        assert_eq!(permissions(1 << 9).unwrap_err().code, spike_result::InvalidArgument);
    }
}
