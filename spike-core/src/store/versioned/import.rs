//! Importing a secret with its whole history from another store (SPIKE's Go Nexus).
//!
//! A put writes one new version; an import writes a secret exactly as the source held it:
//! every stored version with its number, values and times, deleted or not, the counters the
//! source reported, its version limit and its times, in one atomic write guarded like every
//! other write (see the [parent module](super)).
//!
//! The counters are kept verbatim: SPIKE's stored `current_version` is what it served for a
//! read without a version, and its `oldest_version` can differ from the lowest readable version
//! (SPIKE never removed pruned rows, and left it at 0 after a put that followed deleting every
//! version). Where they differ from what this store computes, the record carries them until
//! the secret's next change here; from then on the store computes them as usual. Versions
//! beyond `max_versions` stay readable until the next put prunes them.

use std::collections::{BTreeMap, BTreeSet};

use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{INSTANCE_LEN, Meta, MetaVersion, Reported, SecretStore, Step};
use crate::crypto::{Keyring, RecordKind};
use crate::error::StoreError;
use crate::path::SecretPath;
use crate::secret::SecretValues;
use crate::store::{keys, open_record, seal_record};

/// One version of an [`ImportedSecret`].
#[derive(Debug)]
pub struct ImportedVersion {
    /// Its number (1 or more).
    pub version: u64,
    /// Its values.
    pub values: SecretValues,
    /// When it was written.
    pub created_time: OffsetDateTime,
    /// When it was soft-deleted, if it is.
    pub deleted_time: Option<OffsetDateTime>,
}

/// A secret as another store held it.
#[derive(Debug)]
pub struct ImportedSecret {
    /// The version a read without a version returns (0: none; the path is still listed).
    pub current_version: u64,
    /// The oldest version, as the source reported it.
    pub oldest_version: u64,
    /// The version limit the source applied (at least 1).
    pub max_versions: u32,
    /// When the secret was first written.
    pub created_time: OffsetDateTime,
    /// When its metadata last changed.
    pub updated_time: OffsetDateTime,
    /// Every stored version, deleted or not, in any order.
    pub versions: Vec<ImportedVersion>,
}

/// What [`SecretStore::import`] did (or, checking, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The path was free; the secret is there now.
    Created,
    /// Another secret was at the path and was replaced (`force`).
    Replaced,
    /// The same secret was already there; nothing was written.
    Unchanged,
    /// Another secret is at the path; nothing was written (no `force`).
    Conflict,
}

impl ImportedSecret {
    /// Refuses what the store could not hold faithfully, naming the problem.
    fn validate(&self) -> Result<(), StoreError> {
        let invalid = |why: String| Err(StoreError::Invalid(why));
        if self.max_versions == 0 {
            return invalid("max versions must be at least 1".into());
        }
        let mut seen = BTreeSet::new();
        for v in &self.versions {
            if v.version == 0 {
                return invalid("version numbers start at 1; version 0 cannot be imported".into());
            }
            if !seen.insert(v.version) {
                return invalid(format!("version {} is listed twice", v.version));
            }
        }
        if self.current_version != 0 && !seen.contains(&self.current_version) {
            return invalid(format!(
                "the current version {} is not among the versions sent",
                self.current_version
            ));
        }
        Ok(())
    }

    /// The metadata record this import writes (with a fresh instance id).
    fn to_meta(&self, now: OffsetDateTime) -> Result<Meta, StoreError> {
        let mut meta = Meta::fresh(now)?;
        meta.created = self.created_time;
        meta.updated = self.updated_time;
        meta.max_versions = self.max_versions;
        meta.versions = self
            .versions
            .iter()
            .map(|v| (v.version, MetaVersion { created: v.created_time, deleted: v.deleted_time }))
            .collect();
        meta.latest = meta.versions.keys().next_back().copied().unwrap_or(0);
        let reported = Reported { current: self.current_version, oldest: self.oldest_version };
        if (meta.current(), meta.oldest()) != (reported.current, reported.oldest) {
            meta.reported = Some(reported);
        }
        Ok(meta)
    }
}

impl SecretStore {
    /// Writes `secret` at `path` with its whole history, atomically, keeping the source's
    /// counters as it reported them until the secret's next change here. A path holding the very same secret is [`Imported::Unchanged`];
    /// one holding anything else is [`Imported::Conflict`] unless `force` replaces it. With
    /// `check`, nothing is written and the outcome says what a write would do.
    pub fn import(
        &self,
        path: &SecretPath,
        secret: &ImportedSecret,
        force: bool,
        check: bool,
    ) -> Result<Imported, StoreError> {
        secret.validate()?;
        let path = path.as_str();
        self.update(path, |ring, existing, now, batch| {
            let outcome = match &existing {
                None => Imported::Created,
                Some(old) if self.holds_same(ring, path, old, secret)? => Imported::Unchanged,
                Some(_) if force => Imported::Replaced,
                Some(_) => Imported::Conflict,
            };
            if check || matches!(outcome, Imported::Unchanged | Imported::Conflict) {
                return Ok(Step::Done(outcome));
            }
            let meta = secret.to_meta(now)?;
            if let Some(old) = &existing {
                for v in old.versions.keys().filter(|v| !meta.versions.contains_key(v)) {
                    batch.delete(&keys::version(path, *v));
                }
            }
            for v in &secret.versions {
                let sealed = seal_version(ring, path, &meta.instance, v)?;
                batch.put_owned(keys::version(path, v.version), sealed);
            }
            Ok(Step::Write(meta, outcome))
        })
    }

    /// True when `old` (the stored metadata at `path`) and its version records hold exactly
    /// `secret`: counters, limit, times, flags and every value.
    fn holds_same(
        &self,
        ring: &Keyring,
        path: &str,
        old: &Meta,
        secret: &ImportedSecret,
    ) -> Result<bool, StoreError> {
        let wanted: BTreeMap<u64, &ImportedVersion> =
            secret.versions.iter().map(|v| (v.version, v)).collect();
        let same_meta = old.current() == secret.current_version
            && old.oldest() == secret.oldest_version
            && old.max_versions == secret.max_versions
            && old.created == secret.created_time
            && old.updated == secret.updated_time
            && old.custom.is_empty()
            && old.versions.len() == wanted.len()
            && old.versions.iter().all(|(n, v)| {
                wanted
                    .get(n)
                    .is_some_and(|w| w.created_time == v.created && w.deleted_time == v.deleted)
            });
        if !same_meta {
            return Ok(false);
        }
        for (n, w) in wanted {
            let Some(record) = self.backend.get(&keys::version(path, n))? else {
                return Ok(false);
            };
            let plain = open_record(ring, RecordKind::SecretVersion, path, n, &record)?;
            let Some((instance, json)) = plain.split_at_checked(INSTANCE_LEN) else {
                return Ok(false);
            };
            let same = instance == old.instance && bool::from(json.ct_eq(&w.values.to_json()));
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Seals one imported version's values, bound to the secret's instance.
fn seal_version(
    ring: &Keyring,
    path: &str,
    instance: &[u8; INSTANCE_LEN],
    v: &ImportedVersion,
) -> Result<Vec<u8>, StoreError> {
    let json = v.values.to_json();
    let mut plain = Zeroizing::new(Vec::with_capacity(INSTANCE_LEN + json.len()));
    plain.extend_from_slice(instance);
    plain.extend_from_slice(&json);
    seal_record(ring, RecordKind::SecretVersion, path, v.version, &plain)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::store::{MemoryBackend, PutOptions};

    fn store() -> SecretStore {
        let ring = Arc::new(Keyring::generate().unwrap());
        SecretStore::new(Arc::new(MemoryBackend::new()), ring)
    }

    fn p(s: &str) -> SecretPath {
        SecretPath::parse(s).unwrap()
    }

    fn version(n: u64, v: &str, deleted: bool) -> ImportedVersion {
        let t = datetime!(2026-12-07 12:00:00 UTC) + time::Duration::nanoseconds(n as i64 * 7);
        ImportedVersion {
            version: n,
            values: [("entry", v)].into_iter().collect(),
            created_time: t,
            deleted_time: deleted.then_some(t + time::Duration::SECOND),
        }
    }

    /// SPIKE's `ops/rotation-log`: 12 rows kept, max 10, oldest reported as 3.
    fn rotation_log() -> ImportedSecret {
        ImportedSecret {
            current_version: 12,
            oldest_version: 3,
            max_versions: 10,
            created_time: datetime!(2026-12-07 12:00:00 UTC),
            updated_time: datetime!(2026-12-07 12:01:00 UTC),
            versions: (1..=12).map(|n| version(n, &format!("rotation #{n:02}"), false)).collect(),
        }
    }

    #[test]
    fn every_version_stays_readable_and_the_counters_are_kept() {
        let s = store();
        assert_eq!(
            s.import(&p("ops/log"), &rotation_log(), false, false).unwrap(),
            Imported::Created
        );
        for n in 1..=12 {
            let got = s.get(&p("ops/log"), Some(n)).unwrap();
            assert_eq!(got.get("entry"), Some(format!("rotation #{n:02}").as_str()));
        }
        let meta = s.metadata(&p("ops/log")).unwrap();
        assert_eq!((meta.current_version, meta.oldest_version, meta.max_versions), (12, 3, 10));
        assert_eq!(meta.versions.len(), 12);
        assert_eq!(meta.versions[&5].created_time, rotation_log().versions[4].created_time);
        assert_eq!(meta.updated_time, datetime!(2026-12-07 12:01:00 UTC));
        // The next put is ours: it prunes to the limit and computes the counters.
        s.put(&p("ops/log"), &[("entry", "13")].into_iter().collect(), &PutOptions::new()).unwrap();
        let meta = s.metadata(&p("ops/log")).unwrap();
        assert_eq!((meta.current_version, meta.oldest_version, meta.versions.len()), (13, 4, 10));
    }

    #[test]
    fn a_rerun_is_unchanged_other_content_conflicts_and_force_replaces() {
        let s = store();
        let path = p("ops/log");
        s.import(&path, &rotation_log(), false, false).unwrap();
        let before = s.backend.scan_prefix("s/").unwrap();
        assert_eq!(s.import(&path, &rotation_log(), false, false).unwrap(), Imported::Unchanged);
        assert_eq!(s.backend.scan_prefix("s/").unwrap(), before, "a re-run writes nothing");
        let mut other = rotation_log();
        other.versions[3] = version(4, "changed", false);
        assert_eq!(s.import(&path, &other, false, true).unwrap(), Imported::Conflict);
        assert_eq!(s.import(&path, &other, false, false).unwrap(), Imported::Conflict);
        assert_eq!(s.backend.scan_prefix("s/").unwrap(), before, "a conflict writes nothing");
        assert_eq!(s.import(&path, &other, true, true).unwrap(), Imported::Replaced);
        assert_eq!(s.backend.scan_prefix("s/").unwrap(), before, "a check writes nothing");
        assert_eq!(s.import(&path, &other, true, false).unwrap(), Imported::Replaced);
        assert_eq!(s.get(&path, Some(4)).unwrap().get("entry"), Some("changed"));
        // Replacing a shorter history removes the versions it no longer has.
        let mut short = rotation_log();
        short.versions.truncate(2);
        short.current_version = 2;
        s.import(&path, &short, true, false).unwrap();
        assert!(matches!(s.get(&path, Some(7)), Err(StoreError::NotFound)));
        assert_eq!(s.backend.keys_with_prefix("s/ops/log/v/").unwrap().len(), 2);
    }

    #[test]
    fn deleted_versions_and_spike_counters_come_through() {
        let s = store();
        // Every version deleted, path still listed (SPIKE's `legacy/old-token`).
        let gone = ImportedSecret {
            current_version: 0,
            oldest_version: 0,
            versions: vec![version(1, "a", true), version(2, "b", true)],
            ..rotation_log()
        };
        s.import(&p("legacy/tok"), &gone, false, false).unwrap();
        assert!(matches!(s.get(&p("legacy/tok"), None), Err(StoreError::NotFound)));
        assert!(matches!(s.get(&p("legacy/tok"), Some(1)), Err(StoreError::Deleted)));
        assert_eq!(s.list().unwrap(), vec![p("legacy/tok")]);
        // Oldest 0 beside a live version, as SPIKE leaves it after a put that followed deletes.
        let odd = ImportedSecret {
            current_version: 3,
            oldest_version: 0,
            versions: vec![version(1, "a", true), version(2, "b", true), version(3, "c", false)],
            ..rotation_log()
        };
        s.import(&p("odd"), &odd, false, false).unwrap();
        let meta = s.metadata(&p("odd")).unwrap();
        assert_eq!((meta.current_version, meta.oldest_version), (3, 0));
        assert_eq!(s.get(&p("odd"), None).unwrap().get("entry"), Some("c"));
        // The first change here drops the carried counters.
        s.undelete(&p("odd"), &[1]).unwrap();
        assert_eq!(s.metadata(&p("odd")).unwrap().oldest_version, 1);
    }

    #[test]
    fn inconsistent_imports_are_refused_and_write_nothing() {
        let s = store();
        let bad = [
            ImportedSecret { current_version: 13, ..rotation_log() },
            ImportedSecret { max_versions: 0, ..rotation_log() },
            ImportedSecret {
                versions: vec![version(0, "x", false)],
                current_version: 0,
                ..rotation_log()
            },
            ImportedSecret {
                versions: vec![version(1, "x", false), version(1, "y", false)],
                current_version: 1,
                ..rotation_log()
            },
        ];
        for secret in &bad {
            let e = s.import(&p("x"), secret, false, false).unwrap_err();
            assert!(matches!(e, StoreError::Invalid(_)), "{e}");
        }
        assert!(s.backend.keys_with_prefix("s/").unwrap().is_empty());
    }
}
