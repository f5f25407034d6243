//! Serde adapters that give fields Go's encodings.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{Error as _, SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::ErrorCode;
use crate::secret::SecretValues;

/// `err,omitempty`: absent, `null` and `""` all mean success.
pub(crate) fn err_code<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrorCode>, D::Error> {
    let code: Option<String> = Option::deserialize(d)?;
    Ok(code.filter(|c| !c.is_empty()).map(|c| ErrorCode::from_code(&c)))
}

/// An `err` field without `omitempty`: success is written as `""`.
pub(crate) mod err_always {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        err: &Option<ErrorCode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(err.as_ref().map_or("", ErrorCode::as_str))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ErrorCode>, D::Error> {
        super::err_code(d)
    }
}

/// `time.Time` (never `null`; Go's zero time is a real value).
pub(crate) mod go_time {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = crate::wire::format_go_time(t)
            .ok_or_else(|| S::Error::custom("time year outside Go's range 0..=9999"))?;
        s.serialize_str(&text)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        // Go leaves the zero time in place for `null`.
        match Option::<String>::deserialize(d)? {
            None => Ok(crate::wire::GO_ZERO_TIME),
            Some(text) => crate::wire::parse_go_time(&text)
                .ok_or_else(|| de::Error::custom("time is not RFC 3339 as Go writes it")),
        }
    }
}

/// `*time.Time`: nil is `null`.
pub(crate) mod go_time_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            None => s.serialize_none(),
            Some(t) => go_time::serialize(t, s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => crate::wire::parse_go_time(&text)
                .map(Some)
                .ok_or_else(|| de::Error::custom("time is not RFC 3339 as Go writes it")),
        }
    }
}

/// `[]byte`: standard padded base64, nil is `null`.
pub(crate) mod bytes_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            None => s.serialize_none(),
            Some(b) => s.serialize_str(&STANDARD.encode(b)),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => STANDARD
                .decode(text)
                .map(Some)
                .map_err(|_| de::Error::custom("bytes are not standard padded base64")),
        }
    }
}

/// `map[int]V`: decimal string keys, written in Go's order (sorted as strings).
pub(crate) mod int_map {
    use super::*;

    pub(crate) fn serialize<S: Serializer, V: Serialize>(
        map: &Option<BTreeMap<u64, V>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let Some(map) = map else {
            return s.serialize_none();
        };
        // encoding/json sorts map keys by their string form, so 10 comes before 2.
        let mut entries: Vec<(String, &V)> = map.iter().map(|(k, v)| (k.to_string(), v)).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = s.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            out.serialize_entry(&k, v)?;
        }
        out.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<BTreeMap<u64, V>>, D::Error> {
        d.deserialize_option(OptionVisitor(std::marker::PhantomData))
    }

    struct OptionVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for OptionVisitor<V> {
        type Value = Option<BTreeMap<u64, V>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with decimal integer keys, or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(MapVisitor(std::marker::PhantomData)).map(Some)
        }
    }

    struct MapVisitor<V>(std::marker::PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
        type Value = BTreeMap<u64, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with decimal integer keys")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            // Go parses keys with strconv.ParseInt(key, 10, 64); negative keys have no
            // meaning here (versions and share ids start at 1), so they are rejected.
            // Document order decides duplicates ("1" then "01"): the last one wins, as in Go.
            while let Some(key) = map.next_key::<String>()? {
                let key: u64 = key
                    .parse()
                    .map_err(|_| de::Error::custom("map key is not a decimal integer"))?;
                let value = map.next_value::<V>()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }
}

/// `map[string]string` of secret values, built straight into [`SecretValues`] so partial
/// input is zeroized if decoding fails; nil is `null`.
pub(crate) mod secret_values_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        values: &Option<SecretValues>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let Some(values) = values else {
            return s.serialize_none();
        };
        let mut out = s.serialize_map(Some(values.len()))?;
        for (k, v) in values.iter() {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SecretValues>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<SecretValues>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string values or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(ValuesVisitor).map(Some)
        }
    }

    struct ValuesVisitor;

    impl<'de> Visitor<'de> for ValuesVisitor {
        type Value = SecretValues;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of string values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValues, A::Error> {
            let mut values = SecretValues::new();
            // Go keeps the last of duplicate keys; `insert` does too and zeroizes the first.
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                values.insert(k, v);
            }
            Ok(values)
        }
    }
}

/// Debug helper that shows a secret map's keys but never its values.
pub(crate) struct RedactedValues<'a>(pub(crate) &'a Option<SecretValues>);

impl fmt::Debug for RedactedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("None"),
            Some(values) => {
                f.write_str("Some(")?;
                f.debug_map().entries(values.keys().map(|k| (k, Redacted))).finish()?;
                f.write_str(")")
            }
        }
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}
