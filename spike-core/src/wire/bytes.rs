//! Secret byte fields: a Shamir share ([`ShardBytes`]) and plaintext bytes ([`SecretBytes`]),
//! zeroized on drop and never printed.

use std::fmt;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::{KEY_LEN, KeeperShare};

/// One 32-byte Shamir share on the wire (Go `*[32]byte`, an array of exactly 32 numbers).
///
/// Zeroized on drop; `Debug` prints `ShardBytes([REDACTED])`; not `Clone`. Decoding fills the
/// buffer in place, so a half-read share is zeroized too. Go would zero-fill a shorter array
/// and drop extra elements; we reject both.
pub struct ShardBytes(SecretBox<[u8; KEY_LEN]>);

impl ShardBytes {
    /// Takes ownership of share bytes, zeroizing the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let shard = ShardBytes(SecretBox::new(Box::new(*bytes)));
        bytes.zeroize();
        shard
    }

    /// The share's bytes (big-endian P-256 scalar), for the few places that compute with them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }

    /// True when every byte is zero: SPIKE rejects such shares (`shamir_empty_shard`). Runs in
    /// constant time.
    pub fn is_zero(&self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.expose_secret()[..], &[0u8; KEY_LEN][..]).into()
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &ShardBytes) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.expose_secret()[..], &other.expose_secret()[..]).into()
    }

    /// The share as a Keeper holds it, with its 1-based index.
    pub fn to_keeper_share(&self, index: u8) -> KeeperShare {
        let mut bytes = *self.expose_secret();
        KeeperShare::new(index, &mut bytes)
    }

    /// The wire form of a Keeper's share (its index travels separately, if at all).
    pub fn from_keeper_share(share: &KeeperShare) -> Self {
        let mut bytes = *share.expose_secret();
        ShardBytes::from_bytes(&mut bytes)
    }
}

impl fmt::Debug for ShardBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShardBytes([REDACTED])")
    }
}

impl Serialize for ShardBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut seq = serializer.serialize_tuple(KEY_LEN)?;
        for b in self.expose_secret() {
            seq.serialize_element(b)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ShardBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShardVisitor;

        impl<'de> serde::de::Visitor<'de> for ShardVisitor {
            type Value = ShardBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of exactly 32 numbers 0..=255")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ShardBytes, A::Error> {
                let mut shard = ShardBytes(SecretBox::new(Box::new([0u8; KEY_LEN])));
                let buf = shard.0.expose_secret_mut();
                for (i, slot) in buf.iter_mut().enumerate() {
                    *slot = seq
                        .next_element::<u8>()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(KEY_LEN + 1, &self));
                }
                Ok(shard)
            }
        }

        deserializer.deserialize_tuple(KEY_LEN, ShardVisitor)
    }
}

/// Secret bytes on the wire (Go `[]byte` holding a plaintext): standard padded base64.
///
/// Zeroized on drop; `Debug` prints `SecretBytes([REDACTED])`; not `Clone`. Encoding and
/// decoding go through zeroizing buffers sized once.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a zeroizing buffer.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(Zeroizing::new(bytes.to_vec()))
    }

    /// The bytes, for the AEAD or the caller that asked for them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Hands the zeroizing buffer over.
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.0));
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretBytesVisitor;

        impl serde::de::Visitor<'_> for SecretBytesVisitor {
            type Value = SecretBytes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("standard padded base64")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SecretBytes, E> {
                use base64::Engine;
                let mut buf = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
                let n = base64::engine::general_purpose::STANDARD
                    .decode_slice(text, &mut buf[..])
                    .map_err(|_| E::custom("bytes are not standard padded base64"))?;
                buf.truncate(n);
                Ok(SecretBytes(buf))
            }
        }

        deserializer.deserialize_str(SecretBytesVisitor)
    }
}
