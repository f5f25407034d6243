//! Every SPIKE v1 API request body (DESIGN.md "bounded JSON", "secrets in logs or error
//! bodies"): decoding arbitrary bytes never panics; whatever decodes re-encodes to JSON that
//! decodes to the same value (encode ∘ decode is idempotent); decode errors carry a position
//! only, never input bytes; `Debug` of secret-bearing requests is redacted. Also the routing
//! inputs (method, path, raw query) and the octet-stream cipher framing.
//!
//! Input: the first byte picks the request type (see `REQUESTS`), the rest is the body. For
//! the routing case the body is `METHOD\npath\nquery`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spike_core::wire::cipher::DEFAULT_MAX_CIPHERTEXT_LEN;
use spike_core::wire::operator::DEFAULT_MAX_SHARE_COUNT;
use spike_core::wire::{self, *};

/// Decodes `body` as `T`; if it decodes, checks the encode/decode round trip and returns it.
fn round_trip<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let value = match wire::decode::<T>(body) {
        Ok(v) => v,
        Err(e) => {
            // A position and a category, nothing from the body.
            let msg = e.to_string();
            assert!(msg.starts_with("body is not valid SPIKE v1 JSON ("), "{msg:?}");
            assert!(msg.len() < 120, "{msg:?}");
            return None;
        }
    };
    let once = wire::encode(&value).expect("a decoded value encodes");
    let again: T = wire::decode(&once).unwrap_or_else(|e| {
        panic!("our own encoding does not decode ({e}): {}", String::from_utf8_lossy(&once))
    });
    let twice = wire::encode(&again).expect("encodes");
    assert_eq!(&once[..], &twice[..], "encode/decode is not stable");
    Some(value)
}

fn routing(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let mut parts = text.splitn(3, '\n');
    let (method, path, query) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let action = wire::query_action(query);
    for service in [Service::Nexus, Service::Keeper] {
        if let Some(route) = Route::resolve(service, method, path, query) {
            // Exact path, POST only, the action the query names, the right service.
            assert_eq!(method, "POST");
            assert_eq!(route.path(), path);
            assert_eq!(route.service(), service);
            assert_eq!(route.action().as_str(), action);
            assert_eq!(Action::from_query_value(&action), Some(route.action()));
        }
    }
}

fn cipher_stream(body: &[u8]) {
    if let Ok(frame) = CipherStream::parse(body) {
        assert_eq!(frame.to_bytes(), body, "framing must round-trip byte for byte");
    } else {
        assert!(body.first() != Some(&1) || body.len() < 13);
    }
}

fn go_time(body: &[u8]) {
    let Ok(s) = std::str::from_utf8(body) else { return };
    if let Some(t) = wire::parse_go_time(s)
        && let Some(formatted) = wire::format_go_time(&t)
    {
        assert_eq!(wire::parse_go_time(&formatted), Some(t), "{s:?} -> {formatted:?}");
    }
}

const REQUESTS: u8 = 20;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let max = DEFAULT_MAX_CIPHERTEXT_LEN;
    match selector % REQUESTS {
        0 => {
            if let Some(req) = round_trip::<SecretPutRequest>(body) {
                let _ = spike_core::path::SecretPath::parse_for_write(&req.path);
            }
        }
        1 => drop(round_trip::<SecretGetRequest>(body)),
        2 => drop(round_trip::<SecretDeleteRequest>(body)),
        3 => drop(round_trip::<SecretUndeleteRequest>(body)),
        4 => drop(round_trip::<SecretDestroyRequest>(body)),
        5 => drop(round_trip::<SecretListRequest>(body)),
        6 => drop(round_trip::<SecretMetadataRequest>(body)),
        7 => drop(round_trip::<PolicyPutRequest>(body)),
        8 => drop(round_trip::<PolicyGetRequest>(body)),
        9 => drop(round_trip::<PolicyDeleteRequest>(body)),
        10 => drop(round_trip::<PolicyListRequest>(body)),
        11 => {
            if let Some(req) = round_trip::<CipherEncryptRequest>(body) {
                let _ = req.validate(max);
                if req.plaintext.as_ref().is_some_and(|p| !p.is_empty()) {
                    assert!(format!("{req:?}").contains("REDACTED"), "plaintext in Debug");
                }
            }
        }
        12 => {
            if let Some(req) = round_trip::<CipherDecryptRequest>(body) {
                let _ = req.validate(max);
            }
        }
        13 => drop(round_trip::<RecoverRequest>(body)),
        14 => {
            if let Some(req) = round_trip::<RestoreRequest>(body) {
                let ok = req.validate(DEFAULT_MAX_SHARE_COUNT).is_ok();
                let nonzero = req.shard.as_ref().is_some_and(|s| s.expose_secret() != &[0; 32]);
                assert_eq!(ok, nonzero && (1..=DEFAULT_MAX_SHARE_COUNT).contains(&req.id));
                if req.shard.is_some() {
                    assert!(format!("{req:?}").contains("REDACTED"), "shard in Debug");
                }
            }
        }
        15 => {
            if let Some(req) = round_trip::<BootstrapVerifyRequest>(body) {
                let _ = req.validate(max);
            }
        }
        16 => {
            if let Some(req) = round_trip::<ShardContributeRequest>(body) {
                let ok = req.validate().is_ok();
                let nonzero = req.shard.as_ref().is_some_and(|s| s.expose_secret() != &[0; 32]);
                assert_eq!(ok, nonzero);
            }
        }
        17 => drop(round_trip::<ShardGetRequest>(body)),
        18 => {
            routing(body);
            cipher_stream(body);
        }
        _ => go_time(body),
    }
});
