//! `/v1/cipher/encrypt` and `/v1/cipher/decrypt`: encryption as a service, in JSON mode and
//! SPIKE's streaming (`application/octet-stream`) mode.
//!
//! Callers need the superuser role, the lite-workload role, or `execute` on
//! `spike/system/cipher/exec` (SPIKE). The key is derived from the root key for this purpose
//! only, separate from the keys that protect stored records.
//!
//! After `spike operator import-spike`, a ciphertext that does not open under that key is tried
//! once more under the legacy cipher key (SPIKE's root key, AES-256-GCM without associated
//! data, as SPIKE's cipher service sealed), so ciphertexts SPIKE handed out keep working. Both
//! are authenticated encryptions: a ciphertext opens under at most one of them in practice,
//! and one that opens under neither fails exactly as before. New encryptions use our key only.

use spike_core::crypto::{service, spike_legacy};
use spike_core::identity::Role;
use spike_core::policy::Permission;
use spike_core::wire::cipher::*;
use spike_core::wire::{ErrorCode, SecretBytes, WireResponse};
use zeroize::Zeroizing;

use super::Ctx;
use crate::nexus::authz::{self, SYSTEM_CIPHER_PATH};
use crate::nexus::reply::{OCTET_STREAM, Reply};
use crate::nexus::state::Unsealed;

fn check<Resp: WireResponse + serde::Serialize>(
    ctx: &Ctx<'_>,
) -> Result<std::sync::Arc<crate::nexus::state::Unsealed>, Reply> {
    let unsealed = ctx.unsealed::<Resp>()?;
    let roots = &ctx.state.config().trust_roots;
    let ok = roots.is(ctx.caller, Role::LiteWorkload)
        || authz::allowed(
            roots,
            &unsealed.policies(),
            ctx.caller,
            SYSTEM_CIPHER_PATH,
            Permission::Execute,
        );
    if ok { Ok(unsealed) } else { Err(Reply::denied::<Resp>()) }
}

/// Encrypts: JSON `{plaintext}` → `{version, nonce, ciphertext}`, or raw bytes → framed bytes.
pub fn encrypt(ctx: &Ctx<'_>) -> Reply {
    let max = ctx.state.config().max_cipher_bytes;
    let run = || -> Result<Reply, Reply> {
        let unsealed = check::<CipherEncryptResponse>(ctx)?;
        if ctx.octet_stream {
            if ctx.body.len() > max {
                return Err(Reply::text(400, ErrorCode::DataInvalidInput));
            }
            let (nonce, ct) = service::encrypt(unsealed.cipher_key(), ctx.body)
                .map_err(|_| Reply::text(500, ErrorCode::CryptoNonceGenerationFailed))?;
            let frame = CipherStream { version: CIPHER_VERSION, nonce: &nonce, ciphertext: &ct };
            return Ok(Reply::raw(200, Zeroizing::new(frame.to_bytes()), OCTET_STREAM));
        }
        let req: CipherEncryptRequest = ctx.decode::<_, CipherEncryptResponse>()?;
        req.validate(max).map_err(Reply::fail::<CipherEncryptResponse>)?;
        let plaintext = req.plaintext.as_ref().map_or(&[][..], SecretBytes::expose_secret);
        let (nonce, ct) = service::encrypt(unsealed.cipher_key(), plaintext)
            .map_err(|_| Reply::internal::<CipherEncryptResponse>())?;
        Ok(Reply::ok(&CipherEncryptResponse {
            version: CIPHER_VERSION,
            nonce: Some(nonce.to_vec()),
            ciphertext: Some(ct),
            err: None,
        }))
    };
    run().unwrap_or_else(|r| r)
}

/// Decrypts: JSON `{version, nonce, ciphertext}` → `{plaintext}`, or framed bytes → raw bytes.
/// A ciphertext that does not open is 500 in JSON mode and a plain-text 400 in streaming
/// mode, as SPIKE answers.
pub fn decrypt(ctx: &Ctx<'_>) -> Reply {
    let max = ctx.state.config().max_cipher_bytes;
    let run = || -> Result<Reply, Reply> {
        let unsealed = check::<CipherDecryptResponse>(ctx)?;
        if ctx.octet_stream {
            let frame = CipherStream::parse(ctx.body).map_err(|c| Reply::text(400, c))?;
            if frame.ciphertext.len() > max {
                return Err(Reply::text(400, ErrorCode::DataInvalidInput));
            }
            let plain = open(ctx, &unsealed, frame.nonce, frame.ciphertext).map_err(|_| {
                let mut r = Reply::text(400, ErrorCode::CryptoDecryptionFailed);
                r.body = Zeroizing::new(b"decryption failed\n".to_vec());
                r
            })?;
            return Ok(Reply::raw(200, plain, OCTET_STREAM));
        }
        let req: CipherDecryptRequest = ctx.decode::<_, CipherDecryptResponse>()?;
        req.validate(max).map_err(Reply::fail::<CipherDecryptResponse>)?;
        let nonce = req.nonce.as_deref().unwrap_or_default();
        let ct = req.ciphertext.as_deref().unwrap_or_default();
        let plain = open(ctx, &unsealed, nonce, ct)
            .map_err(|_| Reply::internal::<CipherDecryptResponse>())?;
        let plaintext = (!plain.is_empty()).then(|| SecretBytes::from_slice(&plain));
        Ok(Reply::ok(&CipherDecryptResponse { plaintext, err: None }))
    };
    run().unwrap_or_else(|r| r)
}

/// Opens a ciphertext under our cipher key, or else under the legacy (SPIKE) key if one was
/// imported (see the module docs).
fn open(
    ctx: &Ctx<'_>,
    unsealed: &Unsealed,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ()> {
    if let Ok(plain) = service::decrypt(unsealed.cipher_key(), nonce, ciphertext) {
        return Ok(plain);
    }
    let legacy = unsealed.vault().legacy_cipher_key().map_err(|e| {
        tracing::error!(error = %e, "reading the legacy cipher key failed");
    })?;
    let key = legacy.ok_or(())?;
    let plain = spike_legacy::open(key.expose_secret(), nonce, ciphertext).map_err(|_| ())?;
    ctx.state.metrics.count_legacy_decrypt();
    Ok(plain)
}
