//! `/v1/bootstrap/verify`: Bootstrap proves Nexus holds the same root key.
//!
//! Bootstrap seals a random nonce with plain AES-256-GCM under the root key (no associated
//! data: that is what SPIKE's Go `spike-bootstrap` sends), and Nexus answers with the SHA-256
//! of the plaintext. Only the bootstrap SPIFFE ID may call it.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use spike_core::identity::Role;
use spike_core::wire::bootstrap::*;
use spike_core::wire::cipher::DEFAULT_MAX_CIPHERTEXT_LEN;

use super::Ctx;
use crate::nexus::reply::Reply;

/// Verifies Bootstrap's sealed nonce and returns the hex SHA-256 of its plaintext.
pub fn verify(ctx: &Ctx<'_>) -> Reply {
    let run = || -> Result<Reply, Reply> {
        let req: BootstrapVerifyRequest = ctx.decode::<_, BootstrapVerifyResponse>()?;
        if !ctx.state.config().trust_roots.is(ctx.caller, Role::Bootstrap) {
            return Err(Reply::denied::<BootstrapVerifyResponse>());
        }
        req.validate(DEFAULT_MAX_CIPHERTEXT_LEN).map_err(Reply::fail::<BootstrapVerifyResponse>)?;
        let unsealed = ctx.unsealed::<BootstrapVerifyResponse>()?;
        let cipher = Aes256Gcm::new(unsealed.root().expose_secret().into());
        let nonce = req.nonce.as_deref().unwrap_or_default();
        let ct = req.ciphertext.as_deref().unwrap_or_default();
        if nonce.len() != 12 {
            return Err(Reply::bad_request::<BootstrapVerifyResponse>());
        }
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| Reply::internal::<BootstrapVerifyResponse>())?;
        let hash = hex::encode(Sha256::digest(&plain[..]));
        Ok(Reply::ok(&BootstrapVerifyResponse { hash, err: None }))
    };
    run().unwrap_or_else(|r| r)
}
