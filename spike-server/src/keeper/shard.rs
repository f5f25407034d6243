//! The one shard a Keeper holds: in memory only, page-locked where the OS allows, zeroized
//! when it is replaced and when the Keeper exits.
//!
//! A Keeper does not know which share index it holds: Keeper IDs are positional (the n-th URL
//! in Nexus's `SPIKE_NEXUS_KEEPER_PEERS` holds share n, DESIGN.md), so only Nexus knows. The
//! slot therefore keeps the 32 share bytes under the placeholder index 0, which
//! [`spike_core::shamir`] refuses to combine: a Keeper can never rebuild anything by itself.

use std::sync::Mutex;

use spike_core::secret::KeeperShare;
use spike_core::wire::ShardBytes;

/// The placeholder index under which a Keeper keeps its shard (it does not know the real one).
const UNKNOWN_INDEX: u8 = 0;

/// The Keeper's shard slot: empty until Nexus or Bootstrap contributes a shard.
#[derive(Debug, Default)]
pub struct ShardSlot {
    // `KeeperShare` zeroizes its (mlocked) bytes on drop, so replacing or clearing the
    // `Option` wipes the previous shard.
    slot: Mutex<Option<KeeperShare>>,
}

impl ShardSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `shard`, zeroizing the one held before. Returns true if a shard was replaced.
    pub fn replace(&self, shard: &ShardBytes) -> bool {
        let fresh = shard.to_keeper_share(UNKNOWN_INDEX);
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        // The old share is dropped (and zeroized) here, after the new one is in place.
        slot.replace(fresh).is_some()
    }

    /// A copy of the shard in its wire form, or `None` while the Keeper holds none.
    pub fn get(&self) -> Option<ShardBytes> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(ShardBytes::from_keeper_share)
    }

    /// True while no shard has been contributed.
    pub fn is_empty(&self) -> bool {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Forgets the shard, zeroizing it (on exit).
    pub fn clear(&self) {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(byte: u8) -> ShardBytes {
        ShardBytes::from_bytes(&mut [byte; 32])
    }

    #[test]
    fn holds_exactly_one_shard_and_replaces_it() {
        let slot = ShardSlot::new();
        assert!(slot.is_empty());
        assert!(slot.get().is_none());
        assert!(!slot.replace(&shard(7)));
        assert!(slot.get().unwrap().ct_eq(&shard(7)));
        assert!(slot.replace(&shard(9)));
        assert!(slot.get().unwrap().ct_eq(&shard(9)));
        slot.clear();
        assert!(slot.is_empty());
    }

    #[test]
    fn debug_never_shows_the_shard() {
        let slot = ShardSlot::new();
        slot.replace(&shard(0xAB));
        let shown = format!("{slot:?}");
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
