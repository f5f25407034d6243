//! Shared helpers for spike-rs benchmarks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Deterministic payload of `len` bytes, so runs are comparable.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
