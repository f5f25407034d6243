//! Shamir share decoding and recombination (DESIGN.md "Shamir"; the restore and keeper
//! routes): arbitrary share sets never panic, and `combine_verified` never accepts a share set
//! that does not give back the real root key — a wrong, corrupted or foreign share is an
//! error, not a wrong key. Unmodified share sets of at least the threshold always recombine.
//!
//! Input: byte 0 picks the threshold (2..=5) and the mode; mode "raw" reads `(index, length,
//! bytes)` triples for `combine_from_bytes`; mode "tamper" XORs the rest of the input into real
//! shares of a fixed key and picks a subset by bit mask; mode "json" decodes the body as a
//! restore request and as a keeper contribution, then recombines with real shares.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use spike_core::secret::{KeeperShare, RootKey};
use spike_core::shamir;
use spike_core::wire::{self, RestoreRequest, ShardContributeRequest};

const SHARES: usize = 5;

struct Deal {
    key: RootKey,
    kcv: [u8; 32],
    /// Shares for thresholds 2..=5, indexed by threshold - 2.
    by_threshold: Vec<Vec<KeeperShare>>,
}

fn deal() -> &'static Deal {
    static DEAL: OnceLock<Deal> = OnceLock::new();
    DEAL.get_or_init(|| {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = 0x42 ^ (i as u8).wrapping_mul(29);
        }
        bytes[0] &= 0x7f; // below the group order
        let key = RootKey::from_bytes(&mut bytes);
        let kcv = shamir::key_check_value(&key);
        let by_threshold = (2..=SHARES)
            .map(|t| shamir::split(&key, t, SHARES).expect("valid parameters"))
            .collect();
        Deal { key, kcv, by_threshold }
    })
}

/// The oracle: a verified recombination is the real key, or an error.
fn check_verified(shares: &[KeeperShare], threshold: usize) {
    let d = deal();
    if let Ok(key) = shamir::combine_verified(shares, threshold, &d.kcv) {
        assert!(key.ct_eq(&d.key), "combine_verified accepted a share set giving a wrong key");
    }
}

fn raw(threshold: usize, mut rest: &[u8]) {
    let mut pairs: Vec<(u8, &[u8])> = Vec::new();
    // Bounded by the input length: every round consumes at least two bytes.
    while let [index, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        pairs.push((*index, &tail[..len]));
        rest = &tail[len..];
    }
    if let Ok(key) = shamir::combine_from_bytes(&pairs, threshold) {
        // Unverified recombination yields *a* key; only the check value says whether it is ours.
        let ours = shamir::verify_key_check_value(&key, &deal().kcv).is_ok();
        assert_eq!(ours, key.ct_eq(&deal().key));
        assert!(pairs.iter().all(|(_, b)| b.len() == 32));
    }
    let owned: Vec<KeeperShare> = pairs
        .iter()
        .filter_map(|(i, b)| {
            <[u8; 32]>::try_from(*b).ok().map(|mut a| KeeperShare::new(*i, &mut a))
        })
        .collect();
    check_verified(&owned, threshold);
}

fn tamper(threshold: usize, rest: &[u8]) {
    let real = &deal().by_threshold[threshold - 2];
    let (mask, noise) = rest.split_first().map_or((0xff, &[][..]), |(m, n)| (*m, n));
    let mut chosen = Vec::new();
    let mut touched = false;
    for (i, share) in real.iter().enumerate() {
        if mask & (1 << i) == 0 {
            continue;
        }
        let mut bytes = *share.expose_secret();
        for (j, b) in bytes.iter_mut().enumerate() {
            if let Some(n) = noise.get(i * 32 + j) {
                touched |= *n != 0;
                *b ^= n;
            }
        }
        chosen.push(KeeperShare::new(share.index(), &mut bytes));
    }
    let result = shamir::combine_verified(&chosen, threshold, &deal().kcv);
    if !touched && chosen.len() >= threshold {
        let key = result.expect("untouched shares at the threshold must recombine");
        assert!(key.ct_eq(&deal().key));
    } else {
        check_verified(&chosen, threshold);
    }
}

fn json(threshold: usize, body: &[u8]) {
    let real = &deal().by_threshold[threshold - 2];
    if let Ok(req) = wire::decode::<RestoreRequest>(body)
        && req.validate(255).is_ok()
        && let Some(shard) = req.shard.as_ref()
    {
        let index = u8::try_from(req.id).expect("validate bounds the id");
        let mut set = vec![shard.to_keeper_share(index)];
        set.extend(real.iter().filter(|s| s.index() != index).map(KeeperShare::duplicate));
        set.truncate(threshold);
        check_verified(&set, threshold);
    }
    if let Ok(req) = wire::decode::<ShardContributeRequest>(body)
        && let Some(shard) = req.shard.as_ref()
    {
        let back = wire::ShardBytes::from_keeper_share(&shard.to_keeper_share(1));
        assert!(back.ct_eq(shard));
        assert_eq!(shard.is_zero(), shard.expose_secret() == &[0u8; 32]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let threshold = 2 + usize::from(head % 4);
    match (head >> 2) % 3 {
        0 => raw(threshold, rest),
        1 => tamper(threshold, rest),
        _ => json(threshold, rest),
    }
});
