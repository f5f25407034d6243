//! Shamir secret sharing of the root key across Keepers, over the P-256 scalar field.
//!
//! A share is what a Keeper holds ([`KeeperShare`]): a 1-based index `x` and the polynomial's
//! value `y = f(x)` as a 32-byte big-endian P-256 scalar, the format SPIKE Go's Keepers use.
//! Arithmetic is done by [`vsss_rs`] over `p256::Scalar` (not the `sharks` crate:
//! RUSTSEC-2024-0398, whose biased coefficients leak the secret over repeated dealings).
//!
//! ```
//! use spike_core::shamir;
//!
//! let key = shamir::generate_root_key()?;
//! let kcv = shamir::key_check_value(&key);
//! let shares = shamir::split(&key, 2, 3)?;
//! // Any two of the three shares give the key back, and the key check value proves it.
//! let back = shamir::combine_verified(&shares[1..], 2, &kcv)?;
//! assert!(back.ct_eq(&key));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # The root key as a scalar
//!
//! The secret is the root key's 32 bytes read as a big-endian integer, which must be a
//! P-256 scalar: below the group order `n` (about 2^256 - 2^224, so a uniformly random key
//! is out of range with probability about 2^-32). Reducing an out-of-range key modulo `n`
//! would make recombination return *different* bytes, silently changing the key, so
//! [`split`] refuses such keys with [`ShamirError::KeyOutOfRange`] instead. Make root keys
//! with [`generate_root_key`], which redraws until [`is_valid_secret`] holds. The all-zero
//! key is refused too: it only ever comes from a zeroized or uninitialised buffer.
//!
//! # Deterministic dealing
//!
//! The polynomial `f(x) = s + a_1 x + ... + a_{t-1} x^{t-1}` has its coefficients derived from
//! the key itself: `a_i` is the first HMAC-SHA256 output under the key, over the label
//! [`COEFFICIENT_LABEL`] ‖ `t` ‖ `i` ‖ a 32-bit counter, that is a canonical scalar
//! (rejection sampling, so each `a_i` is exactly uniform, unlike the biased sampling behind
//! RUSTSEC-2024-0398). Why:
//!
//! - Nexus re-sends shares to Keepers periodically and after restarts. With fresh random
//!   coefficients, every dealing would be a new polynomial, and an attacker who collects
//!   shares from several dealings (say one Keeper's share before and after a restart) gathers
//!   points on *different* polynomials of the same secret; keeping every dealing identical
//!   means that, however many times the key is re-split, only the `n` points of one
//!   polynomial ever exist. Re-splitting the same key with the same threshold gives the same
//!   shares.
//! - `n` is not part of the derivation, so adding a Keeper (raising `n`) leaves the existing
//!   Keepers' shares unchanged; `t` is, so a different threshold gives an independent
//!   polynomial rather than one that shares its low coefficients with the old one.
//! - The coefficients are a pseudorandom function of a 256-bit secret key, so fewer than `t`
//!   shares reveal nothing about the key short of breaking HMAC-SHA256. SPIKE Go likewise
//!   seeds its dealing from the root key.
//!
//! The derivation is pinned by a test vector; changing it would hand Keepers shares of a new
//! polynomial, so it is versioned by its label.
//!
//! # Recombination
//!
//! [`combine`] uses the first `threshold` shares it is given (after checking all of them) and
//! cannot tell a wrong share from a right one: any `t` points define *some* polynomial. Use
//! [`combine_verified`] with the [`key_check_value`] recorded when the key was made, so a
//! wrong or foreign share is detected instead of yielding a wrong root key.

use hmac::{Hmac, Mac};
use p256::elliptic_curve::{Field, PrimeField};
use p256::{FieldBytes, Scalar};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use vsss_rs::{DefaultShare, IdentifierPrimeField, ReadableShareSet};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{CryptoError, ShamirError};
use crate::secret::{KEY_LEN, KeeperShare, RootKey};

/// Most shares a key can be split into: share indices are one byte, and 0 is the secret.
pub const MAX_SHARES: usize = 255;

/// Domain-separation label for deriving polynomial coefficients from the key (versioned).
pub const COEFFICIENT_LABEL: &[u8] = b"spike-rs/shamir/coefficient/v1";

/// Domain-separation label of the key check value (versioned).
pub const KEY_CHECK_LABEL: &[u8] = b"spike-rs/shamir/key-check-value/v1";

/// How many times [`generate_root_key`] redraws before blaming the random number generator.
/// A healthy CSPRNG needs a redraw with probability about 2^-32 per draw.
const MAX_KEY_DRAWS: usize = 16;

type Fe = IdentifierPrimeField<Scalar>;
type P256Share = DefaultShare<Fe, Fe>;

/// True if `bytes`, read big-endian, is a non-zero P-256 scalar (in `1..n`), i.e. a root key
/// that [`split`] accepts and [`combine`] gives back byte for byte.
pub fn is_valid_secret(bytes: &[u8; KEY_LEN]) -> bool {
    let mut repr = FieldBytes::default();
    repr.copy_from_slice(bytes);
    let parsed = Scalar::from_repr(repr);
    Zeroize::zeroize(&mut repr[..]);
    let in_range = parsed.is_some();
    let mut scalar = parsed.unwrap_or(Scalar::ZERO);
    let valid = in_range & !scalar.is_zero();
    scalar.zeroize();
    valid.into()
}

/// Makes a fresh root key from the OS CSPRNG that is a valid P-256 scalar, redrawing the
/// (rare, about 2^-32) draws that are not. Use this, not `RootKey::generate`, for keys that
/// will be split.
pub fn generate_root_key() -> Result<RootKey, CryptoError> {
    for _ in 0..MAX_KEY_DRAWS {
        let key = RootKey::generate()?;
        if is_valid_secret(key.expose_secret()) {
            return Ok(key);
        }
    }
    Err(CryptoError::Rng(format!(
        "{MAX_KEY_DRAWS} draws in a row were not valid P-256 scalars, which a working \
         generator does with probability 2^-512; check the system's entropy source"
    )))
}

/// The key check value of a root key: HMAC-SHA256 of [`KEY_CHECK_LABEL`] under the key.
///
/// Store it next to the data (it reveals nothing useful about the key) and pass it to
/// [`combine_verified`] to prove that recombined shares gave back the right key.
pub fn key_check_value(key: &RootKey) -> [u8; 32] {
    let mut mac = hmac_under(key.expose_secret());
    mac.update(KEY_CHECK_LABEL);
    mac.finalize().into_bytes().into()
}

/// Checks, in constant time, that `key` has the key check value `expected`.
///
/// Returns [`ShamirError::CheckFailed`] if it does not.
pub fn verify_key_check_value(key: &RootKey, expected: &[u8; 32]) -> Result<(), ShamirError> {
    let actual = key_check_value(key);
    if bool::from(actual.ct_eq(expected)) { Ok(()) } else { Err(ShamirError::CheckFailed) }
}

/// Splits `key` into `shares` Keeper shares, any `threshold` of which recombine to it.
///
/// Share `i` (1-based) is for Keeper `i`. Dealing is deterministic (see the [module
/// docs](self)): the same key and threshold always give the same shares.
///
/// Errors: [`ShamirError::InvalidParameters`] unless `2 <= threshold <= shares <= 255`
/// (`threshold == shares == 1` is allowed for development: the single share is then the key
/// itself); [`ShamirError::KeyOutOfRange`] if the key is not a non-zero P-256 scalar.
pub fn split(
    key: &RootKey,
    threshold: usize,
    shares: usize,
) -> Result<Vec<KeeperShare>, ShamirError> {
    check_split_params(threshold, shares)?;
    let secret = Zeroizing::new(parse_secret(key)?);

    let mut out = Vec::with_capacity(shares);
    if threshold == 1 {
        // A degree-0 polynomial: f(x) = s, so the one share is the key (dev mode only; the
        // parameter check refuses threshold 1 with more than one share).
        let mut bytes = scalar_to_bytes(&secret);
        out.push(KeeperShare::new(1, &mut bytes));
        return Ok(out);
    }

    // vsss-rs's polynomial layout: slot 0 holds the secret as its value, slot i >= 1 holds
    // coefficient a_i as its identifier. Unused fields stay zero.
    let mut polynomial: Zeroizing<Vec<P256Share>> =
        Zeroizing::new(vec![P256Share::default(); threshold]);
    polynomial[0].value = IdentifierPrimeField(*secret);
    for (i, slot) in polynomial.iter_mut().enumerate().skip(1) {
        slot.identifier = IdentifierPrimeField(derive_coefficient(key, threshold, i));
    }

    let mut points: Zeroizing<Vec<P256Share>> = Zeroizing::new(vec![P256Share::default(); shares]);
    let ids = (1..=shares as u64).map(|x| IdentifierPrimeField(Scalar::from(x)));
    vsss_rs::shamir::create_shares_from_polynomial_in_place(
        &*polynomial,
        threshold,
        ids,
        &mut points[..],
    )
    .map_err(|e| ShamirError::Library(e.to_string()))?;

    for (x, point) in (1..=shares).zip(points.iter()) {
        let mut bytes = scalar_to_bytes(&point.value.0);
        // x <= shares <= 255, checked by check_split_params.
        out.push(KeeperShare::new(x as u8, &mut bytes));
    }
    Ok(out)
}

/// Recombines the root key from Keeper shares made by [`split`] with this `threshold`.
///
/// All shares are checked; the first `threshold` are used. This cannot detect a wrong share
/// (it yields a wrong key); prefer [`combine_verified`].
///
/// Errors: [`ShamirError::InvalidParameters`] if `threshold` is 0 or above 255;
/// [`ShamirError::ZeroIndex`], [`ShamirError::DuplicateIndex`] or
/// [`ShamirError::InvalidShare`] for a malformed share; [`ShamirError::NotEnoughShares`] if
/// fewer than `threshold` shares are given.
pub fn combine(shares: &[KeeperShare], threshold: usize) -> Result<RootKey, ShamirError> {
    if threshold == 0 || threshold > MAX_SHARES {
        return Err(ShamirError::InvalidParameters {
            threshold,
            shares: shares.len(),
            reason: "the threshold must be between 1 and 255; use the value the key was split with",
        });
    }
    let mut seen = [false; MAX_SHARES + 1];
    let mut points: Zeroizing<Vec<P256Share>> = Zeroizing::new(Vec::with_capacity(shares.len()));
    for share in shares {
        let index = share.index();
        if index == 0 {
            return Err(ShamirError::ZeroIndex);
        }
        if seen[usize::from(index)] {
            return Err(ShamirError::DuplicateIndex(index));
        }
        seen[usize::from(index)] = true;
        let y = parse_scalar(share.expose_secret()).ok_or(ShamirError::InvalidShare(index))?;
        points.push(P256Share {
            identifier: IdentifierPrimeField(Scalar::from(u64::from(index))),
            value: IdentifierPrimeField(y),
        });
    }
    if points.len() < threshold {
        return Err(ShamirError::NotEnoughShares { threshold, got: points.len() });
    }

    let mut secret = if threshold == 1 {
        // Degree 0: every share's value is the secret.
        points[0].value
    } else {
        let used: &[P256Share] = &points[..threshold];
        used.combine().map_err(|e| ShamirError::Library(e.to_string()))?
    };
    let mut bytes = scalar_to_bytes(&secret.0);
    secret.zeroize();
    Ok(RootKey::from_bytes(&mut bytes))
}

/// Recombines the root key like [`combine`] and checks it against the key check value
/// recorded when it was made (see [`key_check_value`]), in constant time.
///
/// Returns [`ShamirError::CheckFailed`] if the shares give a different key: a share is
/// wrong, corrupted, from another deployment, or the threshold is not the one used to split.
pub fn combine_verified(
    shares: &[KeeperShare],
    threshold: usize,
    expected_kcv: &[u8; 32],
) -> Result<RootKey, ShamirError> {
    let key = combine(shares, threshold)?;
    verify_key_check_value(&key, expected_kcv)?;
    Ok(key)
}

/// Recombines the root key from `(index, bytes)` pairs as decoded from the wire, like
/// [`combine`].
///
/// Every share must be exactly 32 bytes: [`ShamirError::MixedLength`] if their lengths
/// differ, [`ShamirError::BadLength`] if they agree on a length other than 32.
pub fn combine_from_bytes(
    shares: &[(u8, &[u8])],
    threshold: usize,
) -> Result<RootKey, ShamirError> {
    if let Some((_, first)) = shares.first() {
        let first = first.len();
        if let Some((_, other)) = shares.iter().find(|(_, s)| s.len() != first) {
            return Err(ShamirError::MixedLength { first, other: other.len() });
        }
        if first != KEY_LEN {
            return Err(ShamirError::BadLength { index: shares[0].0, len: first });
        }
    }
    let owned: Vec<KeeperShare> = shares
        .iter()
        .map(|(index, bytes)| {
            let mut value = [0u8; KEY_LEN];
            value.copy_from_slice(bytes);
            KeeperShare::new(*index, &mut value)
        })
        .collect();
    combine(&owned, threshold)
}

fn check_split_params(threshold: usize, shares: usize) -> Result<(), ShamirError> {
    let reason = if shares == 0 {
        Some("at least one share is needed; use one share per Keeper")
    } else if shares > MAX_SHARES {
        Some("at most 255 shares are possible (share indices are one byte)")
    } else if threshold == 0 {
        Some("the threshold must be at least 1 (at least 2 in production)")
    } else if threshold > shares {
        Some(
            "the threshold cannot exceed the number of shares, or the key could never be recovered",
        )
    } else if threshold == 1 && shares > 1 {
        Some(
            "threshold 1 would give every Keeper the whole root key; use a threshold of at \
             least 2 (threshold 1 is allowed only with a single share, for development)",
        )
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ShamirError::InvalidParameters { threshold, shares, reason }),
        None => Ok(()),
    }
}

/// The key as a scalar, refusing keys that are not a non-zero canonical scalar.
fn parse_secret(key: &RootKey) -> Result<Scalar, ShamirError> {
    if !is_valid_secret(key.expose_secret()) {
        return Err(ShamirError::KeyOutOfRange);
    }
    parse_scalar(key.expose_secret()).ok_or(ShamirError::KeyOutOfRange)
}

/// Parses 32 big-endian bytes as a canonical scalar (`< n`); zero is allowed.
fn parse_scalar(bytes: &[u8; KEY_LEN]) -> Option<Scalar> {
    let mut repr = FieldBytes::default();
    repr.copy_from_slice(bytes);
    let parsed = Scalar::from_repr(repr);
    Zeroize::zeroize(&mut repr[..]);
    parsed.into()
}

fn scalar_to_bytes(scalar: &Scalar) -> [u8; KEY_LEN] {
    let mut repr = scalar.to_repr();
    let mut bytes = [0u8; KEY_LEN];
    bytes.copy_from_slice(&repr);
    Zeroize::zeroize(&mut repr[..]);
    bytes
}

fn hmac_under(key: &[u8; KEY_LEN]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this never fails.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts a 32-byte key"))
}

/// Coefficient `a_index` of the degree-`threshold - 1` polynomial for `key`: the first
/// HMAC-SHA256(key, label ‖ t ‖ i ‖ counter) output that is a canonical scalar.
fn derive_coefficient(key: &RootKey, threshold: usize, index: usize) -> Scalar {
    // Both fit in a byte: threshold <= shares <= 255 and index < threshold.
    let (t, i) = (threshold as u8, index as u8);
    let base = {
        let mut mac = hmac_under(key.expose_secret());
        mac.update(COEFFICIENT_LABEL);
        mac.update(&[t, i]);
        mac
    };
    let mut counter: u32 = 0;
    loop {
        let mut mac = base.clone();
        mac.update(&counter.to_be_bytes());
        let mut block: [u8; KEY_LEN] = mac.finalize().into_bytes().into();
        let scalar = parse_scalar(&block);
        block.zeroize();
        if let Some(scalar) = scalar {
            return scalar;
        }
        // Rejection happens with probability about 2^-32 per block, so the counter never
        // gets near wrapping.
        counter = counter.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The P-256 group order n, big-endian.
    const ORDER: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    fn key_from(mut bytes: [u8; KEY_LEN]) -> RootKey {
        RootKey::from_bytes(&mut bytes)
    }

    fn test_key() -> RootKey {
        let mut bytes = [0u8; KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        key_from(bytes)
    }

    fn params_err(r: Result<Vec<KeeperShare>, ShamirError>) -> bool {
        matches!(r, Err(ShamirError::InvalidParameters { .. }))
    }

    #[test]
    fn any_threshold_subset_recombines_to_the_key() {
        let key = generate_root_key().unwrap();
        let shares = split(&key, 3, 5).unwrap();
        assert_eq!(shares.len(), 5);
        assert_eq!(shares.iter().map(KeeperShare::index).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        for a in 0..5 {
            for b in a + 1..5 {
                for c in b + 1..5 {
                    let subset =
                        [shares[a].duplicate(), shares[b].duplicate(), shares[c].duplicate()];
                    assert!(combine(&subset, 3).unwrap().ct_eq(&key), "subset {a},{b},{c}");
                }
            }
        }
        // More than the threshold is fine too.
        assert!(combine(&shares, 3).unwrap().ct_eq(&key));
    }

    #[test]
    fn dealing_is_deterministic_and_independent_of_share_count() {
        let key = test_key();
        let a = split(&key, 3, 5).unwrap();
        let b = split(&key, 3, 5).unwrap();
        let c = split(&key, 3, 7).unwrap();
        for i in 0..5 {
            assert_eq!(a[i].expose_secret(), b[i].expose_secret());
            assert_eq!(a[i].expose_secret(), c[i].expose_secret(), "adding Keepers keeps shares");
        }
        // A different threshold is an independent polynomial.
        let d = split(&key, 2, 5).unwrap();
        assert_ne!(a[0].expose_secret(), d[0].expose_secret());
    }

    #[test]
    fn dealing_matches_the_pinned_test_vector() {
        // Pins the coefficient derivation: changing it would hand Keepers shares of a new
        // polynomial. Recompute f(x) = s + a1 x + a2 x^2 with plain scalar arithmetic.
        let key = test_key();
        let s = parse_secret(&key).unwrap();
        let a1 = derive_coefficient(&key, 3, 1);
        let a2 = derive_coefficient(&key, 3, 2);
        let shares = split(&key, 3, 5).unwrap();
        for share in &shares {
            let x = Scalar::from(u64::from(share.index()));
            let y = s + a1 * x + a2 * x * x;
            assert_eq!(&scalar_to_bytes(&y), share.expose_secret());
        }
        assert_eq!(
            hex(&scalar_to_bytes(&a1)),
            hex(&{
                let mut mac = hmac_under(key.expose_secret());
                mac.update(b"spike-rs/shamir/coefficient/v1\x03\x01\x00\x00\x00\x00");
                let b: [u8; 32] = mac.finalize().into_bytes().into();
                b
            }),
            "a1 is the first HMAC block when it is in range"
        );
        assert_eq!(hex(shares[0].expose_secret()), PINNED_SHARE_1);
    }

    const PINNED_SHARE_1: &str = "00aebfaa676580177dd5df596b6fa67991f3a9c173726006196d79327201f646";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fewer_than_threshold_shares_do_not_give_the_key() {
        let key = generate_root_key().unwrap();
        let kcv = key_check_value(&key);
        let shares = split(&key, 3, 5).unwrap();
        assert_eq!(
            combine(&shares[..2], 3).unwrap_err(),
            ShamirError::NotEnoughShares { threshold: 3, got: 2 }
        );
        // Claiming a lower threshold interpolates a different polynomial.
        let wrong = combine(&shares[..2], 2).unwrap();
        assert!(!wrong.ct_eq(&key));
        assert_eq!(combine_verified(&shares[..2], 2, &kcv).unwrap_err(), ShamirError::CheckFailed);
        assert_eq!(combine_verified(&shares[..1], 1, &kcv).unwrap_err(), ShamirError::CheckFailed);
        assert!(combine_verified(&shares[2..], 3, &kcv).unwrap().ct_eq(&key));
    }

    #[test]
    fn a_corrupted_share_fails_the_key_check() {
        let key = generate_root_key().unwrap();
        let kcv = key_check_value(&key);
        let shares = split(&key, 2, 3).unwrap();
        let mut bad = *shares[1].expose_secret();
        bad[31] ^= 1;
        let tampered = vec![shares[0].duplicate(), KeeperShare::new(2, &mut bad)];
        assert_eq!(combine_verified(&tampered, 2, &kcv).unwrap_err(), ShamirError::CheckFailed);
    }

    #[test]
    fn one_of_one_is_the_key_itself_for_development() {
        let key = test_key();
        let shares = split(&key, 1, 1).unwrap();
        assert_eq!(shares.len(), 1);
        assert_eq!(shares[0].index(), 1);
        assert_eq!(shares[0].expose_secret(), key.expose_secret());
        assert!(combine(&shares, 1).unwrap().ct_eq(&key));
    }

    #[test]
    fn split_rejects_bad_parameters() {
        let key = test_key();
        assert!(params_err(split(&key, 0, 3)), "t = 0");
        assert!(params_err(split(&key, 0, 0)), "n = 0");
        assert!(params_err(split(&key, 1, 0)), "n = 0");
        assert!(params_err(split(&key, 4, 3)), "t > n");
        assert!(params_err(split(&key, 1, 3)), "t = 1 with n > 1");
        assert!(params_err(split(&key, 2, 256)), "n > 255");
        assert_eq!(split(&key, 255, 255).unwrap().len(), 255);
        let err = split(&key, 1, 3).unwrap_err().to_string();
        assert!(err.contains("threshold 1") && err.contains("at least 2"), "{err}");
    }

    #[test]
    fn split_rejects_keys_that_are_not_scalars() {
        assert!(!is_valid_secret(&ORDER));
        assert!(!is_valid_secret(&[0xff; 32]));
        assert!(!is_valid_secret(&[0; 32]));
        let mut below = ORDER;
        below[31] -= 1;
        assert!(is_valid_secret(&below));
        assert!(is_valid_secret(&{
            let mut one = [0u8; 32];
            one[31] = 1;
            one
        }));
        for bytes in [ORDER, [0xff; 32], [0; 32]] {
            assert_eq!(split(&key_from(bytes), 2, 3).unwrap_err(), ShamirError::KeyOutOfRange);
        }
        // The largest valid key round-trips byte for byte.
        let key = key_from(below);
        let shares = split(&key, 2, 3).unwrap();
        assert_eq!(combine(&shares[1..], 2).unwrap().expose_secret(), &below);
    }

    #[test]
    fn combine_rejects_malformed_share_sets() {
        let key = test_key();
        let shares = split(&key, 2, 3).unwrap();
        let mut zero = *shares[0].expose_secret();
        let with_zero = vec![KeeperShare::new(0, &mut zero), shares[1].duplicate()];
        assert_eq!(combine(&with_zero, 2).unwrap_err(), ShamirError::ZeroIndex);

        let dup = vec![shares[1].duplicate(), shares[1].duplicate()];
        assert_eq!(combine(&dup, 2).unwrap_err(), ShamirError::DuplicateIndex(2));

        let mut order = ORDER;
        let bad = vec![shares[0].duplicate(), KeeperShare::new(2, &mut order)];
        assert_eq!(combine(&bad, 2).unwrap_err(), ShamirError::InvalidShare(2));

        assert!(matches!(combine(&shares, 0), Err(ShamirError::InvalidParameters { .. })));
        assert!(matches!(combine(&shares, 256), Err(ShamirError::InvalidParameters { .. })));
        assert_eq!(
            combine(&[], 2).unwrap_err(),
            ShamirError::NotEnoughShares { threshold: 2, got: 0 }
        );
    }

    #[test]
    fn combine_from_bytes_checks_lengths() {
        let key = test_key();
        let shares = split(&key, 2, 3).unwrap();
        let a = *shares[0].expose_secret();
        let b = *shares[2].expose_secret();
        let ok = combine_from_bytes(&[(1, &a[..]), (3, &b[..])], 2).unwrap();
        assert!(ok.ct_eq(&key));
        assert_eq!(
            combine_from_bytes(&[(1, &a[..]), (3, &b[..31])], 2).unwrap_err(),
            ShamirError::MixedLength { first: 32, other: 31 }
        );
        assert_eq!(
            combine_from_bytes(&[(1, &a[..16]), (3, &b[..16])], 2).unwrap_err(),
            ShamirError::BadLength { index: 1, len: 16 }
        );
        assert_eq!(
            combine_from_bytes(&[], 2).unwrap_err(),
            ShamirError::NotEnoughShares { threshold: 2, got: 0 }
        );
    }

    #[test]
    fn key_check_value_is_stable_and_key_specific() {
        let a = test_key();
        let b = generate_root_key().unwrap();
        assert_eq!(key_check_value(&a), key_check_value(&test_key()));
        assert_ne!(key_check_value(&a), key_check_value(&b));
        assert!(verify_key_check_value(&a, &key_check_value(&a)).is_ok());
        assert_eq!(
            verify_key_check_value(&a, &key_check_value(&b)).unwrap_err(),
            ShamirError::CheckFailed
        );
    }

    #[test]
    fn generated_root_keys_are_valid_secrets() {
        for _ in 0..32 {
            assert!(is_valid_secret(generate_root_key().unwrap().expose_secret()));
        }
    }

    /// A valid key from arbitrary bytes: clear the top bit, so the value is below n, and
    /// avoid zero.
    fn arb_key() -> impl Strategy<Value = [u8; 32]> {
        any::<[u8; 32]>().prop_map(|mut b| {
            b[0] &= 0x7f;
            b[31] |= 1;
            b
        })
    }

    /// (threshold, shares, a permutation seed for choosing subsets).
    fn arb_params() -> impl Strategy<Value = (usize, usize, Vec<usize>)> {
        (2usize..=8).prop_flat_map(|t| {
            (Just(t), t..=10).prop_flat_map(|(t, n)| {
                (Just(t), Just(n), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_t_of_n_recombine(bytes in arb_key(), (t, n, order) in arb_params(), extra in 0usize..3) {
            let key = key_from(bytes);
            let kcv = key_check_value(&key);
            let shares = split(&key, t, n).unwrap();
            prop_assert_eq!(shares.len(), n);
            let take = (t + extra).min(n);
            let subset: Vec<KeeperShare> = order[..take].iter().map(|&i| shares[i].duplicate()).collect();
            let back = combine_verified(&subset, t, &kcv).unwrap();
            prop_assert_eq!(back.expose_secret(), &bytes);
        }

        #[test]
        fn fewer_than_t_never_give_the_key(bytes in arb_key(), (t, n, order) in arb_params()) {
            let key = key_from(bytes);
            let kcv = key_check_value(&key);
            let shares = split(&key, t, n).unwrap();
            let subset: Vec<KeeperShare> = order[..t - 1].iter().map(|&i| shares[i].duplicate()).collect();
            let is_not_enough = matches!(
                combine(&subset, t),
                Err(ShamirError::NotEnoughShares { .. })
            );
            prop_assert!(is_not_enough);
            let wrong = combine(&subset, t - 1).unwrap();
            prop_assert_ne!(wrong.expose_secret(), &bytes);
            prop_assert_eq!(combine_verified(&subset, t - 1, &kcv).unwrap_err(), ShamirError::CheckFailed);
        }

        #[test]
        fn resplitting_is_deterministic(bytes in arb_key(), (t, n, _order) in arb_params()) {
            let key = key_from(bytes);
            let a = split(&key, t, n).unwrap();
            let b = split(&key, t, n).unwrap();
            for (x, y) in a.iter().zip(&b) {
                prop_assert_eq!(x.index(), y.index());
                prop_assert_eq!(x.expose_secret(), y.expose_secret());
            }
        }

        #[test]
        fn combine_from_bytes_never_panics(
            shares in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..6),
            t in 0usize..8,
        ) {
            let refs: Vec<(u8, &[u8])> = shares.iter().map(|(i, b)| (*i, b.as_slice())).collect();
            let _ = combine_from_bytes(&refs, t);
        }
    }
}
