//! `spike-import`: reads a SPIKE (Go) 0.8.x Nexus SQLite store and decrypts it into the
//! requests of `spike operator import-spike` ([`spike_core::wire::import`]).
//!
//! [`read_store`] never touches the user's files: it copies `spike.db`, and the `spike.db-wal`
//! beside it if there is one, into a private temporary directory, opens the copy (so SQLite
//! applies the write-ahead log, where SPIKE keeps its recent writes: its Nexus has no graceful
//! shutdown), checks that it is a SPIKE 0.8.x store, decrypts every row with SPIKE's root key,
//! checks that the rows agree with each other, and removes the copy. It returns everything or
//! an error: nothing partial.
//!
//! What SPIKE stores, and how this crate reads it:
//! - `secret_metadata`: one row per secret path, each field a decimal string sealed under the
//!   row's nonce XOR a field salt ([`spike_legacy::field_nonce`]): current, oldest and maximum
//!   versions, created and updated times (unix seconds). The counters are passed through
//!   verbatim, including a current version of 0 (every version deleted, the path still listed).
//! - `secrets`: one row per stored version, its values a sealed JSON object; its created and
//!   deleted times are plaintext text from Go's SQLite driver. SPIKE never removes pruned
//!   versions, so every row is imported, even beyond the version limit.
//! - `policies`: three fields sealed under the row's one nonce (SPIFFE ID pattern, path pattern,
//!   comma-joined permissions); plaintext unix-second times.
//!
//! Stop SPIKE Nexus before reading its store: a file copied while Nexus writes may pair a
//! database with a log from another moment.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod gotime;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use spike_core::crypto::spike_legacy::{self, MetadataField};
use spike_core::error::CryptoError;
use spike_core::secret::{KEY_LEN, RootKey, SecretValues};
use spike_core::wire::import::{ImportPolicyRequest, ImportSecretRequest, ImportVersion};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Everything a SPIKE store holds, decrypted, ready to send to spike-rs.
#[derive(Debug)]
pub struct SpikeStore {
    /// Every secret path with its whole history, sorted by path, versions ascending.
    pub secrets: Vec<ImportSecretRequest>,
    /// Every policy, sorted by name.
    pub policies: Vec<ImportPolicyRequest>,
    /// What was read.
    pub source: SourceFiles,
}

/// The sizes of the files a store was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFiles {
    /// Size of `spike.db`, in bytes.
    pub db_bytes: u64,
    /// Size of the `spike.db-wal` beside it, if there was one.
    pub wal_bytes: Option<u64>,
}

/// Why a SPIKE store could not be read. Messages name the file (and the row, where there is
/// one) and never contain a secret value or key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file of the store could not be read.
    #[error("cannot read {}: {source}; check the path and that this user may read it", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The private working copy could not be made in the temporary directory.
    #[error(
        "cannot copy {} into a private temporary directory: {source}; make room there, or \
         point TMPDIR at a directory with space",
        file.display()
    )]
    Copy {
        /// The file being copied.
        file: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// SQLite failed on the (copied) store.
    #[error("SQLite cannot read {} ({what}): {source}", file.display())]
    Sqlite {
        /// The user's file (not the copy).
        file: PathBuf,
        /// What was being done.
        what: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a SPIKE 0.8.x store: a table or column differs, or the schema version.
    #[error(
        "{} is not a store this importer can read: {detail}; this importer reads SPIKE 0.8.x \
         stores (a SPIKE Nexus's spike.db with SPIKE_NEXUS_BACKEND_STORE=sqlite)",
        file.display()
    )]
    Schema {
        /// The file.
        file: PathBuf,
        /// What differs.
        detail: String,
    },
    /// SQLite's integrity check failed.
    #[error(
        "{} is damaged (SQLite's quick_check: {detail}); restore it from a backup, or copy it \
         again (with spike.db-wal) while SPIKE Nexus is stopped",
        file.display()
    )]
    Damaged {
        /// The file.
        file: PathBuf,
        /// SQLite's first complaints.
        detail: String,
    },
    /// No row decrypts under the key: it is not this store's root key.
    #[error(
        "the root key rebuilt from the shards does not open {}: wrong shard files, or fewer than \
         SPIKE's threshold (Shamir threshold, default 2 of 3); use the shard files `spike \
         operator recover` wrote for this SPIKE deployment, at least the threshold of them",
        file.display()
    )]
    WrongKey {
        /// The file.
        file: PathBuf,
    },
    /// One row does not decrypt or decode, while others do under the same key.
    #[error(
        "{} is corrupted: {row} {reason}; nothing was imported. Restore the file from a backup, \
         or delete that secret or policy with SPIKE and read the store again",
        file.display()
    )]
    Corrupted {
        /// The file.
        file: PathBuf,
        /// The row: table and path, version or policy name.
        row: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The rows decrypt but do not agree with each other.
    #[error(
        "{} is inconsistent at secret path {path:?}: {detail}; nothing was imported. Repair \
         or delete that secret with SPIKE and read the store again",
        file.display()
    )]
    Inconsistent {
        /// The file.
        file: PathBuf,
        /// The secret path.
        path: String,
        /// What disagrees.
        detail: String,
    },
}

/// Reads the store at `db` (spike.db; a `spike.db-wal` beside it is taken too), decrypting
/// with SPIKE's root key `root`.
///
/// The files are copied into a private temporary directory (mode 0700) and only the copy is
/// opened; it is removed before this returns. Stop SPIKE Nexus first, so the database and its
/// log are copied at one moment.
///
/// Secrets come sorted by path with their versions ascending, policies sorted by name;
/// `force` and `check` are false. An empty store (no rows) gives empty lists: there is then
/// nothing to prove the key right or wrong.
pub fn read_store(db: &Path, root: &RootKey) -> Result<SpikeStore, ImportError> {
    let copy = WorkingCopy::take(db)?;
    // Dropped (closed) before `copy`, which removes the files.
    let conn = copy.open(db)?;
    let reader = Reader { conn: &conn, file: db };
    reader.check_integrity()?;
    reader.check_schema()?;
    let raw = reader.load()?;
    let (secrets, policies) = decrypt(raw, root.expose_secret(), db)?;
    Ok(SpikeStore { secrets, policies, source: copy.source })
}

/// The tables and columns of a SPIKE 0.8.x store, in declaration order.
const SCHEMA: [(&str, &[&str]); 3] = [
    ("secrets", &["path", "version", "nonce", "encrypted_data", "created_time", "deleted_time"]),
    (
        "secret_metadata",
        &[
            "path",
            "nonce",
            "encrypted_current_version",
            "encrypted_oldest_version",
            "encrypted_created_time",
            "encrypted_updated_time",
            "encrypted_max_versions",
        ],
    ),
    (
        "policies",
        &[
            "name",
            "nonce",
            "encrypted_spiffe_id_pattern",
            "encrypted_path_pattern",
            "encrypted_permissions",
            "created_time",
            "updated_time",
        ],
    ),
];

/// The metadata fields in column order.
const FIELDS: [MetadataField; 5] = [
    MetadataField::CurrentVersion,
    MetadataField::OldestVersion,
    MetadataField::CreatedTime,
    MetadataField::UpdatedTime,
    MetadataField::MaxVersions,
];

/// The private copy of the store's files; removed on drop.
struct WorkingCopy {
    dir: tempfile::TempDir,
    source: SourceFiles,
}

/// The copy's database file name (SQLite finds the log by appending `-wal`).
const COPY_NAME: &str = "spike.db";

impl WorkingCopy {
    /// Copies `db` and, if present, `db`-wal into a fresh 0700 temporary directory.
    fn take(db: &Path) -> Result<Self, ImportError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("spike-import-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder
            .tempdir()
            .map_err(|source| ImportError::Copy { file: db.to_path_buf(), source })?;

        let db_file = File::open(db).map_err(|e| read_error(db, e))?;
        if db_file.metadata().map_err(|e| read_error(db, e))?.is_dir() {
            return Err(read_error(db, io::Error::other("it is a directory, not spike.db")));
        }
        let db_bytes = copy_file(db, db_file, &dir.path().join(COPY_NAME))?;

        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let wal_bytes = match File::open(&wal) {
            Ok(f) => Some(copy_file(&wal, f, &dir.path().join(format!("{COPY_NAME}-wal")))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(read_error(&wal, e)),
        };
        Ok(Self { dir, source: SourceFiles { db_bytes, wal_bytes } })
    }

    /// Opens the copy of `db` read-write (SQLite then applies the log, into the copy).
    fn open(&self, db: &Path) -> Result<Connection, ImportError> {
        let path = self.dir.path().join(COPY_NAME);
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| ImportError::Sqlite {
            file: db.to_path_buf(),
            what: "opening its private copy",
            source,
        })
    }
}

/// Copies the open file `from` (named `name`) to a new owner-only file `to`; its size.
fn copy_file(name: &Path, mut from: File, to: &Path) -> Result<u64, ImportError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut out = options
        .open(to)
        .map_err(|source| ImportError::Copy { file: name.to_path_buf(), source })?;
    // Read errors name the user's file; write errors the copy.
    let bytes = io::copy(&mut from, &mut out).map_err(|e| read_error(name, e))?;
    out.sync_all().map_err(|source| ImportError::Copy { file: name.to_path_buf(), source })?;
    Ok(bytes)
}

fn read_error(file: &Path, source: io::Error) -> ImportError {
    ImportError::Read { file: file.to_path_buf(), source }
}

/// A row, named for messages (no values).
#[derive(Clone)]
enum RowName {
    Secret {
        path: String,
        version: i64,
    },
    Metadata {
        path: String,
    },
    Policy {
        name: String,
    },
    /// A row whose key column itself is unreadable.
    Numbered {
        table: &'static str,
        rowid: i64,
    },
}

impl fmt::Display for RowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowName::Secret { path, version } => {
                write!(f, "the secrets row of path {path:?} version {version}")
            }
            RowName::Metadata { path } => write!(f, "the secret_metadata row of path {path:?}"),
            RowName::Policy { name } => write!(f, "the policies row of policy {name:?}"),
            RowName::Numbered { table, rowid } => write!(f, "the {table} row with rowid {rowid}"),
        }
    }
}

/// A `secrets` row, still sealed.
struct RawSecret {
    path: String,
    version: u64,
    nonce: Vec<u8>,
    data: Vec<u8>,
    created: OffsetDateTime,
    deleted: Option<OffsetDateTime>,
}

/// A `secret_metadata` row, still sealed.
struct RawMetadata {
    path: String,
    nonce: Vec<u8>,
    /// In [`FIELDS`] order.
    fields: [Vec<u8>; 5],
}

/// A `policies` row, still sealed.
struct RawPolicy {
    name: String,
    nonce: Vec<u8>,
    spiffe_id_pattern: Vec<u8>,
    path_pattern: Vec<u8>,
    permissions: Vec<u8>,
    created: OffsetDateTime,
    updated: OffsetDateTime,
}

/// Every row of the store, still sealed.
struct RawStore {
    secrets: Vec<RawSecret>,
    metadata: Vec<RawMetadata>,
    policies: Vec<RawPolicy>,
}

/// Reads the copy, naming the user's file in errors.
struct Reader<'a> {
    conn: &'a Connection,
    file: &'a Path,
}

impl Reader<'_> {
    /// Maps a SQLite error, recognising files that are not databases or are damaged.
    fn sqlite(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> ImportError + '_ {
        move |source| match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => ImportError::Schema {
                file: self.file.to_path_buf(),
                detail: "it is not a SQLite database".into(),
            },
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                ImportError::Damaged { file: self.file.to_path_buf(), detail: source.to_string() }
            }
            _ => ImportError::Sqlite { file: self.file.to_path_buf(), what, source },
        }
    }

    fn corrupted(&self, row: &RowName, reason: impl Into<String>) -> ImportError {
        ImportError::Corrupted {
            file: self.file.to_path_buf(),
            row: row.to_string(),
            reason: reason.into(),
        }
    }

    /// `PRAGMA quick_check`: refuses a damaged file.
    fn check_integrity(&self) -> Result<(), ImportError> {
        let what = "checking its integrity";
        let mut stmt = self.conn.prepare("PRAGMA quick_check(5)").map_err(self.sqlite(what))?;
        let lines = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(self.sqlite(what))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sqlite(what))?;
        if lines.len() == 1 && lines[0] == "ok" {
            return Ok(());
        }
        Err(ImportError::Damaged { file: self.file.to_path_buf(), detail: lines.join("; ") })
    }

    /// Refuses anything but SPIKE 0.8.x's tables and columns, and a schema version but 0.
    fn check_schema(&self) -> Result<(), ImportError> {
        let what = "reading its schema";
        let schema = |detail: String| ImportError::Schema { file: self.file.to_path_buf(), detail };
        let user_version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(self.sqlite(what))?;
        if user_version != 0 {
            return Err(schema(format!(
                "its schema version (PRAGMA user_version) is {user_version}, SPIKE 0.8.x's is 0"
            )));
        }
        for (table, expected) in SCHEMA {
            let kind: Option<String> = self
                .conn
                .query_row(
                    "SELECT type FROM sqlite_master WHERE name = ?1 COLLATE NOCASE",
                    [table],
                    |row| row.get(0),
                )
                .optional()
                .map_err(self.sqlite(what))?;
            match kind.as_deref() {
                None => return Err(schema(format!("it has no table {table}"))),
                Some("table") => {}
                Some(other) => return Err(schema(format!("{table} is a {other}, not a table"))),
            }
            let mut stmt = self
                .conn
                .prepare("SELECT name FROM pragma_table_info(?1)")
                .map_err(self.sqlite(what))?;
            let columns = stmt
                .query_map([table], |row| row.get::<_, String>(0))
                .map_err(self.sqlite(what))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sqlite(what))?;
            if columns != expected {
                return Err(schema(format!(
                    "table {table} has the columns ({}), SPIKE 0.8.x's has ({})",
                    columns.join(", "),
                    expected.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Loads every row, checking column types and parsing the plaintext times.
    fn load(&self) -> Result<RawStore, ImportError> {
        Ok(RawStore {
            secrets: self.load_secrets()?,
            metadata: self.load_metadata()?,
            policies: self.load_policies()?,
        })
    }

    fn load_secrets(&self) -> Result<Vec<RawSecret>, ImportError> {
        let what = "reading the secrets table";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rowid, path, version, nonce, encrypted_data, created_time, deleted_time \
                 FROM secrets ORDER BY path, version",
            )
            .map_err(self.sqlite(what))?;
        let mut rows = stmt.query([]).map_err(self.sqlite(what))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sqlite(what))? {
            let rowid: i64 = row.get(0).map_err(self.sqlite(what))?;
            let numbered = RowName::Numbered { table: "secrets", rowid };
            let path = self.text(row, 1, &numbered, "path")?;
            let version = match row.get_ref(2).map_err(self.sqlite(what))? {
                ValueRef::Integer(v) => v,
                _ => return Err(self.corrupted(&numbered, "has a version that is not an integer")),
            };
            let name = RowName::Secret { path: path.clone(), version };
            let Ok(version @ 1..) = u64::try_from(version) else {
                return Err(ImportError::Inconsistent {
                    file: self.file.to_path_buf(),
                    path,
                    detail: format!("{name} has a version below 1"),
                });
            };
            let nonce = self.blob(row, 3, &name, "nonce")?;
            let data = self.blob(row, 4, &name, "encrypted_data")?;
            let created = match row.get_ref(5).map_err(self.sqlite(what))? {
                ValueRef::Text(t) => self.go_time(t, &name, "created_time")?,
                _ => return Err(self.corrupted(&name, "has a created_time that is not text")),
            };
            let deleted = match row.get_ref(6).map_err(self.sqlite(what))? {
                ValueRef::Null => None,
                ValueRef::Text(t) => Some(self.go_time(t, &name, "deleted_time")?),
                _ => return Err(self.corrupted(&name, "has a deleted_time that is not text")),
            };
            out.push(RawSecret { path, version, nonce, data, created, deleted });
        }
        Ok(out)
    }

    fn load_metadata(&self) -> Result<Vec<RawMetadata>, ImportError> {
        let what = "reading the secret_metadata table";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rowid, path, nonce, encrypted_current_version, encrypted_oldest_version, \
                 encrypted_created_time, encrypted_updated_time, encrypted_max_versions \
                 FROM secret_metadata ORDER BY path",
            )
            .map_err(self.sqlite(what))?;
        let mut rows = stmt.query([]).map_err(self.sqlite(what))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sqlite(what))? {
            let rowid: i64 = row.get(0).map_err(self.sqlite(what))?;
            let path =
                self.text(row, 1, &RowName::Numbered { table: "secret_metadata", rowid }, "path")?;
            let name = RowName::Metadata { path: path.clone() };
            let nonce = self.blob(row, 2, &name, "nonce")?;
            let mut fields: [Vec<u8>; 5] = Default::default();
            for (i, (slot, field)) in fields.iter_mut().zip(FIELDS).enumerate() {
                *slot = self.blob(row, 3 + i, &name, field.column())?;
            }
            out.push(RawMetadata { path, nonce, fields });
        }
        Ok(out)
    }

    fn load_policies(&self) -> Result<Vec<RawPolicy>, ImportError> {
        let what = "reading the policies table";
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rowid, name, nonce, encrypted_spiffe_id_pattern, encrypted_path_pattern, \
                 encrypted_permissions, created_time, updated_time FROM policies ORDER BY name",
            )
            .map_err(self.sqlite(what))?;
        let mut rows = stmt.query([]).map_err(self.sqlite(what))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sqlite(what))? {
            let rowid: i64 = row.get(0).map_err(self.sqlite(what))?;
            let policy =
                self.text(row, 1, &RowName::Numbered { table: "policies", rowid }, "name")?;
            let name = RowName::Policy { name: policy.clone() };
            let unix = |idx: usize, column: &str| -> Result<OffsetDateTime, ImportError> {
                let ValueRef::Integer(secs) = row.get_ref(idx).map_err(self.sqlite(what))? else {
                    return Err(
                        self.corrupted(&name, format!("has a {column} that is not an integer"))
                    );
                };
                OffsetDateTime::from_unix_timestamp(secs)
                    .map_err(|_| self.corrupted(&name, format!("has a {column} out of range")))
            };
            let created = unix(6, "created_time")?;
            let updated = unix(7, "updated_time")?;
            out.push(RawPolicy {
                name: policy,
                nonce: self.blob(row, 2, &name, "nonce")?,
                spiffe_id_pattern: self.blob(row, 3, &name, "encrypted_spiffe_id_pattern")?,
                path_pattern: self.blob(row, 4, &name, "encrypted_path_pattern")?,
                permissions: self.blob(row, 5, &name, "encrypted_permissions")?,
                created,
                updated,
            });
        }
        Ok(out)
    }

    /// A TEXT column as a string.
    fn text(
        &self,
        row: &rusqlite::Row<'_>,
        idx: usize,
        name: &RowName,
        column: &str,
    ) -> Result<String, ImportError> {
        match row.get_ref(idx).map_err(self.sqlite("reading a row"))? {
            ValueRef::Text(t) => String::from_utf8(t.to_vec())
                .map_err(|_| self.corrupted(name, format!("has a {column} that is not UTF-8"))),
            _ => Err(self.corrupted(name, format!("has a {column} that is not text"))),
        }
    }

    /// A BLOB column's bytes.
    fn blob(
        &self,
        row: &rusqlite::Row<'_>,
        idx: usize,
        name: &RowName,
        column: &str,
    ) -> Result<Vec<u8>, ImportError> {
        match row.get_ref(idx).map_err(self.sqlite("reading a row"))? {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            _ => Err(self.corrupted(name, format!("has a {column} that is not a blob"))),
        }
    }

    /// A time as Go's SQLite driver wrote it, in UTC.
    fn go_time(
        &self,
        text: &[u8],
        name: &RowName,
        column: &str,
    ) -> Result<OffsetDateTime, ImportError> {
        std::str::from_utf8(text).ok().and_then(gotime::parse).ok_or_else(|| {
            let shown = String::from_utf8_lossy(&text[..text.len().min(48)]).into_owned();
            self.corrupted(
                name,
                format!(
                    "has a {column} {shown:?} that is not a time as Go's SQLite driver writes \
                     it (YYYY-MM-DD HH:MM:SS[.fraction]+HH:MM)"
                ),
            )
        })
    }
}

/// Opens sealed fields, telling a wrong key from a corrupted row.
struct Opener<'a> {
    key: &'a [u8; KEY_LEN],
    file: &'a Path,
}

impl Opener<'_> {
    fn open(
        &self,
        nonce: &[u8],
        sealed: &[u8],
        row: &RowName,
        column: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        spike_legacy::open(self.key, nonce, sealed).map_err(|e| ImportError::Corrupted {
            file: self.file.to_path_buf(),
            row: row.to_string(),
            reason: match e {
                CryptoError::Malformed(_) => {
                    format!("has a nonce of {} bytes, not 12", nonce.len())
                }
                _ => format!(
                    "does not decrypt ({column} fails authentication under the key that opens \
                     the other rows)"
                ),
            },
        })
    }

    /// A metadata field, under its derived nonce.
    fn open_field(&self, meta: &RawMetadata, i: usize) -> Result<Zeroizing<Vec<u8>>, ImportError> {
        let row = RowName::Metadata { path: meta.path.clone() };
        let field = FIELDS[i];
        let nonce =
            spike_legacy::field_nonce(&meta.nonce, field).map_err(|_| ImportError::Corrupted {
                file: self.file.to_path_buf(),
                row: row.to_string(),
                reason: format!("has a nonce of {} bytes, not 12", meta.nonce.len()),
            })?;
        self.open(&nonce, &meta.fields[i], &row, field.column())
    }

    /// Metadata field `i` ([`FIELDS`] order) as the decimal number SPIKE wrote.
    fn decimal<T: std::str::FromStr>(
        &self,
        meta: &RawMetadata,
        i: usize,
    ) -> Result<T, ImportError> {
        let plain = self.open_field(meta, i)?;
        std::str::from_utf8(&plain).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
            ImportError::Corrupted {
                file: self.file.to_path_buf(),
                row: RowName::Metadata { path: meta.path.clone() }.to_string(),
                reason: format!(
                    "has an {} that is not a decimal number in range",
                    FIELDS[i].column()
                ),
            }
        })
    }

    /// Metadata field `i` as unix seconds.
    fn unix_time(&self, meta: &RawMetadata, i: usize) -> Result<OffsetDateTime, ImportError> {
        OffsetDateTime::from_unix_timestamp(self.decimal(meta, i)?).map_err(|_| {
            ImportError::Corrupted {
                file: self.file.to_path_buf(),
                row: RowName::Metadata { path: meta.path.clone() }.to_string(),
                reason: format!("has an {} out of range", FIELDS[i].column()),
            }
        })
    }

    /// True if the key opens at least one sealed field of `raw`, or `raw` has none to try.
    ///
    /// Every failure looks alike to AES-GCM: a wrong key is told from a corrupted row by
    /// whether *any* row opens.
    fn key_opens_something(&self, raw: &RawStore) -> bool {
        let opens =
            |nonce: &[u8], sealed: &[u8]| spike_legacy::open(self.key, nonce, sealed).is_ok();
        let mut tried = false;
        for meta in &raw.metadata {
            if let Ok(nonce) = spike_legacy::field_nonce(&meta.nonce, FIELDS[0]) {
                tried = true;
                if opens(&nonce, &meta.fields[0]) {
                    return true;
                }
            }
        }
        for s in &raw.secrets {
            tried = true;
            if opens(&s.nonce, &s.data) {
                return true;
            }
        }
        for p in &raw.policies {
            tried = true;
            if opens(&p.nonce, &p.spiffe_id_pattern) {
                return true;
            }
        }
        !tried
    }
}

/// Decrypts and cross-checks every row.
fn decrypt(
    raw: RawStore,
    key: &[u8; KEY_LEN],
    file: &Path,
) -> Result<(Vec<ImportSecretRequest>, Vec<ImportPolicyRequest>), ImportError> {
    let opener = Opener { key, file };
    if !opener.key_opens_something(&raw) {
        return Err(ImportError::WrongKey { file: file.to_path_buf() });
    }
    let corrupted = |row: &RowName, reason: String| ImportError::Corrupted {
        file: file.to_path_buf(),
        row: row.to_string(),
        reason,
    };
    let inconsistent = |path: &str, detail: String| ImportError::Inconsistent {
        file: file.to_path_buf(),
        path: path.to_owned(),
        detail,
    };

    // Versions by path, ascending.
    let mut versions: BTreeMap<String, BTreeMap<u64, ImportVersion>> = BTreeMap::new();
    for s in raw.secrets {
        let row = RowName::Secret { path: s.path.clone(), version: s.version as i64 };
        let plain = opener.open(&s.nonce, &s.data, &row, "encrypted_data")?;
        let data = if plain.trim_ascii() == b"null" {
            None // Go's nil map.
        } else {
            Some(SecretValues::from_json(&plain).map_err(|e| {
                corrupted(&row, format!("decrypts, but not to a JSON object of strings ({e})"))
            })?)
        };
        let version = ImportVersion {
            version: s.version,
            data,
            created_time: s.created,
            deleted_time: s.deleted,
        };
        if versions.entry(s.path.clone()).or_default().insert(s.version, version).is_some() {
            return Err(inconsistent(&s.path, format!("version {} is stored twice", s.version)));
        }
    }

    let mut secrets = Vec::with_capacity(raw.metadata.len());
    for meta in &raw.metadata {
        let current_version: u64 = opener.decimal(meta, 0)?;
        let oldest_version: u64 = opener.decimal(meta, 1)?;
        let created_time = opener.unix_time(meta, 2)?;
        let updated_time = opener.unix_time(meta, 3)?;
        let max_versions: u32 = opener.decimal(meta, 4)?;

        let stored = versions.remove(&meta.path).unwrap_or_default();
        if current_version != 0 && !stored.contains_key(&current_version) {
            return Err(inconsistent(
                &meta.path,
                format!(
                    "its current version is {current_version}, but the secrets table holds no \
                     such version (it holds {})",
                    describe_versions(&stored)
                ),
            ));
        }
        secrets.push(ImportSecretRequest {
            path: meta.path.clone(),
            current_version,
            oldest_version,
            max_versions,
            created_time,
            updated_time,
            versions: stored.into_values().collect(),
            force: false,
            check: false,
        });
    }
    if let Some((path, orphans)) = versions.into_iter().next() {
        return Err(inconsistent(
            &path,
            format!(
                "the secrets table holds {} of it, but secret_metadata has no row for it",
                describe_versions(&orphans)
            ),
        ));
    }
    secrets.sort_by(|a, b| a.path.cmp(&b.path));

    let mut policies = Vec::with_capacity(raw.policies.len());
    for p in &raw.policies {
        let row = RowName::Policy { name: p.name.clone() };
        let text = |sealed: &[u8], column: &str| -> Result<String, ImportError> {
            let plain = opener.open(&p.nonce, sealed, &row, column)?;
            String::from_utf8(plain.to_vec())
                .map_err(|_| corrupted(&row, format!("has an {column} that is not UTF-8")))
        };
        let spiffeid_pattern = text(&p.spiffe_id_pattern, "encrypted_spiffe_id_pattern")?;
        let path_pattern = text(&p.path_pattern, "encrypted_path_pattern")?;
        let permissions = text(&p.permissions, "encrypted_permissions")?;
        // As SPIKE reads it: empty is none; otherwise split on commas, each trimmed.
        let permissions = if permissions.is_empty() {
            Vec::new()
        } else {
            permissions.split(',').map(|s| s.trim().to_owned()).collect()
        };
        policies.push(ImportPolicyRequest {
            name: p.name.clone(),
            spiffeid_pattern,
            path_pattern,
            permissions,
            created_at: p.created,
            updated_at: p.updated,
            force: false,
            check: false,
        });
    }
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((secrets, policies))
}

/// "versions 1, 2, 3" or "no versions", for messages.
fn describe_versions<V>(versions: &BTreeMap<u64, V>) -> String {
    if versions.is_empty() {
        return "no versions".into();
    }
    let list: Vec<String> = versions.keys().map(u64::to_string).collect();
    let noun = if list.len() == 1 { "version" } else { "versions" };
    format!("{noun} {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_working_copy_is_private_and_removed_afterwards() {
        let user = tempfile::tempdir().unwrap();
        let db = user.path().join("spike.db");
        std::fs::write(&db, b"main").unwrap();
        std::fs::write(user.path().join("spike.db-wal"), b"log!!").unwrap();
        std::fs::write(user.path().join("spike.db-shm"), b"index").unwrap();

        let copy = WorkingCopy::take(&db).unwrap();
        assert_eq!(copy.source, SourceFiles { db_bytes: 4, wal_bytes: Some(5) });
        let dir = copy.dir.path().to_path_buf();
        assert_eq!(std::fs::read(dir.join("spike.db")).unwrap(), b"main");
        assert_eq!(std::fs::read(dir.join("spike.db-wal")).unwrap(), b"log!!");
        assert!(!dir.join("spike.db-shm").exists(), "the shared-memory index is not taken");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join("spike.db")), 0o600);
            assert_eq!(mode(&dir.join("spike.db-wal")), 0o600);
        }
        drop(copy);
        assert!(!dir.exists());

        std::fs::remove_file(user.path().join("spike.db-wal")).unwrap();
        let copy = WorkingCopy::take(&db).unwrap();
        assert_eq!(copy.source.wal_bytes, None);
    }
}
