//! A hash-chained, fail-closed, bounded audit log: one JSON line per request.
//!
//! Each line carries `prev`, the SHA-256 of the previous line's bytes (64 zero hex digits for
//! the first line), and a sequence number, so removing, reordering or editing any line breaks
//! the chain at a line [`verify`] names. A line is written and flushed before the response
//! leaves; if it cannot be, the request fails (fail-closed) rather than go unrecorded.
//!
//! Lines hold who asked for what and what happened (caller SPIFFE ID, route, action, path,
//! decision, status, error code, duration) and never a secret value.
//!
//! Limitation, stated: a chain cannot show that lines were cut off the *end*. The sequence
//! number in the last line, compared with the `spike_audit_lines` metric, shows that.
//!
//! A write that fails part-way (a full disk) must not leave half a line for the next one to be
//! appended to, or the chain would break there for good (issue 8, found by the e2e disk tests).
//! So a file log cuts a failed line off again at once; a log that cannot (another writer, or a
//! failed truncate) refuses every later line until it is reopened. On open, an unterminated
//! last line — a line that was never acknowledged — is cut off likewise.
//!
//! # Bounds (issue 13)
//!
//! A caller with no rights once grew the log by 103 MB in 0.3 s (64 KB URLs, one line per
//! refused request), and the full disk then stopped Nexus for everyone. So:
//!
//! - **Every field has a cap** on its JSON-encoded bytes ([`MAX_CALLER_BYTES`],
//!   [`MAX_ROUTE_BYTES`], [`MAX_ACTION_BYTES`], [`MAX_PATH_BYTES`], [`MAX_CODE_BYTES`]). A
//!   longer value is written as its longest prefix that fits followed by `…`, and two fields
//!   follow it: `<field>_len`, the full value's length in bytes, and `<field>_sha256`, the
//!   SHA-256 (hex) of the full value — e.g. `"route":"/v1/store/sec…","route_len":65536,
//!   "route_sha256":"9f86…"`. A value within its cap is written exactly as before, so existing
//!   consumers see the same lines. No line exceeds [`MAX_LINE_BYTES`].
//! - **Repeated refusals are summarised.** A refusal is a 429 (rate limited), 400/408/413/414
//!   (invalid: malformed, too slow, too large, too long) or 401 (denied). The first refusal
//!   of each kind from a caller opens (or joins) that caller's interval
//!   ([`AuditLimits::refusal_interval`]) and is written as an ordinary line before its
//!   response leaves, as every request used to be. Further refusals of the
//!   same kind from that caller in that interval are only counted; when the interval has
//!   ended, one `refusals_summary` line (in the chain like any other) carries the counts:
//!   `{"seq":…,"time":…,"kind":"refusals_summary","caller":…,"counts":{"rate_limited":n,
//!   "invalid":n,"denied":n},"from":…,"to":…,"prev":…}`, where the counts are the refusals not
//!   written individually and `from`/`to` the times of the interval's first and last refusal.
//!   It is written by the caller's next request after the interval, by a periodic tick
//!   ([`AuditLog::flush_due`]), at shutdown and when the log is dropped
//!   ([`AuditLog::flush_all`]), and when more than [`MAX_AGGREGATED_CALLERS`] callers are
//!   tracked (the oldest interval is closed early), which bounds memory. Every other request
//!   — anything allowed, and failures such as 404, 409, 500, 503 — is written as its own line
//!   before its response, always. Why this is still fail-closed: a counted refusal changed
//!   nothing, its kind is already on record for the interval, and if the summary cannot be
//!   written the caller's next request is refused. What a `kill -9` can lose: the counts of
//!   intervals not yet summarised (at most one interval per caller).
//! - **Files rotate.** A file log that a line would take past [`AuditLimits::max_file_bytes`]
//!   is renamed first — `audit.log` becomes `audit.log.1`, `audit.log.1` becomes
//!   `audit.log.2` and so on (logrotate's numbering: the higher the number, the older) — and
//!   the chain continues in a fresh `audit.log`: its first line's `prev` is the hash of the
//!   last line of `audit.log.1` and its sequence numbers go on. At most
//!   [`AuditLimits::keep_files`] files are kept, the current one included; older ones are
//!   deleted. Deleting them is what it is: their lines are gone, and [`verify_file`] reports
//!   where the surviving chain starts (its first sequence number and that line's `prev`), so
//!   keep a copy elsewhere if the whole history matters. Opening a set continues its chain.
//!
//! A request therefore adds at most [`MAX_AUDIT_BYTES_PER_REQUEST`] bytes, whatever its input;
//! a caller that is refused over and over adds at most four lines per interval.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `prev` value of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Cap on the caller field (JSON-encoded bytes). SPIFFE IDs may be 2048 bytes long (SPIFFE ID
/// §2.3), but real ones are a trust domain (a DNS name, at most 253) and a short path; the
/// hash of the full ID tells two long ones apart.
pub const MAX_CALLER_BYTES: usize = 512;
/// Cap on the route field. SPIKE's routes are at most 26 bytes (`/v1/store/secrets/metadata`).
pub const MAX_ROUTE_BYTES: usize = 128;
/// Cap on the action field. SPIKE's actions are at most 8 bytes (`undelete`).
pub const MAX_ACTION_BYTES: usize = 32;
/// Cap on the path field: the longest valid secret path ([`spike_core::path::MAX_PATH_LEN`]),
/// so every valid path or policy name is written whole and only invalid input is cut.
pub const MAX_PATH_BYTES: usize = spike_core::path::MAX_PATH_LEN;
/// Cap on the error code field. SPIKE's codes are at most about 30 bytes.
pub const MAX_CODE_BYTES: usize = 64;
/// The longest line, newline included, whatever the input. The caps above add up to 1,760
/// bytes; each capped field may add a length (at most 20 digits) and a 64-digit hash; the
/// rest of a line (sequence number, time, decision, status, duration, `prev`, field names) is
/// under 300 bytes: 2,499 bytes measured for the longest line, so 4 KiB is a bound with room,
/// pinned by a test.
pub const MAX_LINE_BYTES: usize = 4096;
/// The most audit bytes one request writes: its own line, the summary of its caller's ended
/// interval, and the summary of the oldest tracked interval when [`MAX_AGGREGATED_CALLERS`]
/// is reached (each summary stands for refusals answered earlier).
pub const MAX_AUDIT_BYTES_PER_REQUEST: usize = 3 * MAX_LINE_BYTES;
/// Most callers with an open refusal interval at once; a new one beyond this closes the
/// oldest interval early (writing its summary). Bounds the memory of aggregation to this many
/// caller IDs and counters (about 10 MB with 2 KB SPIFFE IDs).
pub const MAX_AGGREGATED_CALLERS: usize = 4096;
/// Default for [`AuditLimits::max_file_bytes`] (`SPIKE_NEXUS_AUDIT_MAX_BYTES`): 64 MiB, about
/// 250,000 ordinary lines, and quick to scan when Nexus starts.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Smallest `SPIKE_NEXUS_AUDIT_MAX_BYTES` accepted: four lines of the longest kind.
pub const MIN_FILE_BYTES: u64 = 4 * MAX_LINE_BYTES as u64;
/// Default for [`AuditLimits::keep_files`] (`SPIKE_NEXUS_AUDIT_KEEP_FILES`): with the default
/// file size, at most 512 MiB of audit log.
pub const DEFAULT_KEEP_FILES: u32 = 8;
/// Default for [`AuditLimits::refusal_interval`] (`SPIKE_NEXUS_AUDIT_REFUSAL_INTERVAL`).
pub const DEFAULT_REFUSAL_INTERVAL: Duration = Duration::from_secs(1);
/// The `kind` of a line that summarises an interval's refusals from one caller.
pub const SUMMARY_KIND: &str = "refusals_summary";

/// Why the audit log failed or a chain did not verify.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The sink could not be opened or written.
    #[error("audit log {path}: {source}; check the path and that the disk is writable")]
    Io {
        /// The sink (a file path or a description).
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file was full ([`AuditLimits::max_file_bytes`]) and could not be rotated.
    #[error(
        "audit log {path} is full and could not be rotated: {source}; make its directory \
         writable and free space, or raise SPIKE_NEXUS_AUDIT_MAX_BYTES"
    )]
    Rotate {
        /// The log file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A line did not verify.
    #[error("audit chain broken at {file} line {line}: {reason}")]
    Broken {
        /// The file holding the line (`input` for a stream).
        file: String,
        /// 1-based line number within that file.
        line: u64,
        /// What did not match.
        reason: String,
    },
}

impl AuditError {
    /// True when the sink could not be written for lack of space (see
    /// [`spike_core::error::is_out_of_space`]).
    pub fn is_out_of_space(&self) -> bool {
        matches!(
            self,
            AuditError::Io { source, .. } | AuditError::Rotate { source, .. }
                if spike_core::error::is_out_of_space(source)
        )
    }
}

/// Whether the request was allowed by authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Authorised (the outcome may still be an error such as not found).
    Allow,
    /// Refused by authorisation.
    Deny,
}

/// One request, as the audit log records it. Holds names only, never values.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// The caller's verified SPIFFE ID.
    pub caller: &'a str,
    /// How the caller authenticated.
    pub auth: AuthForm,
    /// The URL path, e.g. `/v1/store/secrets` (for a URL refused as too long: the whole
    /// request target, which the cap cuts and hashes).
    pub route: &'a str,
    /// The `action` query value (`put` when absent on a write route).
    pub action: &'a str,
    /// The secret path or policy id concerned, if any.
    pub path: Option<&'a str>,
    /// The authorisation decision.
    pub decision: Decision,
    /// The HTTP status sent.
    pub status: u16,
    /// SPIKE's error code string, if the request failed.
    pub code: Option<&'a str>,
    /// Time spent handling the request.
    pub duration: Duration,
}

/// How a caller proved its SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthForm {
    /// An X509-SVID over mTLS (the default; audit lines do not name it).
    #[default]
    X509Svid,
    /// A JWT-SVID bearer token on the JWT listener (`"auth":"jwt-svid"` in the line).
    JwtSvid,
}

/// How big the log may grow and how refusals are summarised (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// A file log is rotated before a line would take it past this many bytes.
    pub max_file_bytes: u64,
    /// Files kept, the current one included (at least 1); older ones are deleted.
    pub keep_files: u32,
    /// Repeated refusals of one kind from one caller within this interval are summarised.
    pub refusal_interval: Duration,
}

impl Default for AuditLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            keep_files: DEFAULT_KEEP_FILES,
            refusal_interval: DEFAULT_REFUSAL_INTERVAL,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// The bytes `c` takes in a JSON string as serde_json writes it (RFC 8259 §7: quote, backslash
/// and control characters are escaped; everything else is written as UTF-8).
fn json_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Marks a cut value; 3 bytes, not escaped.
const CUT: char = '…';

/// A field value within its cap: the value itself, or a prefix with the full length and hash.
#[derive(Debug)]
struct Capped<'a> {
    text: Cow<'a, str>,
    len: Option<usize>,
    sha256: Option<String>,
}

/// `value` as written under a cap of `max` JSON-encoded bytes.
fn cap(value: &str, max: usize) -> Capped<'_> {
    // Escaping never shrinks a value, so a value longer than the cap needs no counting.
    if value.len() <= max && value.chars().map(json_len).sum::<usize>() <= max {
        return Capped { text: Cow::Borrowed(value), len: None, sha256: None };
    }
    let budget = max.saturating_sub(CUT.len_utf8());
    let (mut used, mut end) = (0, 0);
    for (i, c) in value.char_indices() {
        used += json_len(c);
        if used > budget {
            break;
        }
        end = i + c.len_utf8();
    }
    Capped {
        text: Cow::Owned(format!("{}{CUT}", &value[..end])),
        len: Some(value.len()),
        sha256: Some(hash_hex(value.as_bytes())),
    }
}

/// The capped fields of one request, prepared before the log is locked (hashing a long value
/// takes time no other writer should wait for).
#[derive(Debug)]
struct RequestFields<'a> {
    caller: Capped<'a>,
    auth: AuthForm,
    route: Capped<'a>,
    action: Capped<'a>,
    path: Option<Capped<'a>>,
    decision: Decision,
    status: u16,
    code: Option<Capped<'a>>,
    duration_us: u64,
}

impl<'a> RequestFields<'a> {
    fn new(e: &AuditEvent<'a>) -> Self {
        Self {
            caller: cap(e.caller, MAX_CALLER_BYTES),
            auth: e.auth,
            route: cap(e.route, MAX_ROUTE_BYTES),
            action: cap(e.action, MAX_ACTION_BYTES),
            path: e.path.map(|p| cap(p, MAX_PATH_BYTES)),
            decision: e.decision,
            status: e.status,
            code: e.code.map(|c| cap(c, MAX_CODE_BYTES)),
            duration_us: u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
        }
    }

    fn line(&self, seq: u64, time: &str, prev: &str) -> Vec<u8> {
        let line = RequestLine {
            seq,
            time,
            caller: &self.caller.text,
            caller_len: self.caller.len,
            caller_sha256: self.caller.sha256.as_deref(),
            auth: (self.auth == AuthForm::JwtSvid).then_some("jwt-svid"),
            route: &self.route.text,
            route_len: self.route.len,
            route_sha256: self.route.sha256.as_deref(),
            action: &self.action.text,
            action_len: self.action.len,
            action_sha256: self.action.sha256.as_deref(),
            path: self.path.as_ref().map(|p| &*p.text),
            path_len: self.path.as_ref().and_then(|p| p.len),
            path_sha256: self.path.as_ref().and_then(|p| p.sha256.as_deref()),
            decision: self.decision,
            status: self.status,
            code: self.code.as_ref().map(|c| &*c.text),
            code_len: self.code.as_ref().and_then(|c| c.len),
            code_sha256: self.code.as_ref().and_then(|c| c.sha256.as_deref()),
            duration_us: self.duration_us,
            prev,
        };
        // A struct of strings and integers always serialises.
        serde_json::to_vec(&line).unwrap_or_default()
    }
}

/// One request line, fields in a fixed order; the `_len`/`_sha256` fields appear only after a
/// cut value, so lines of short values are byte-identical to those before the caps.
#[derive(Debug, Serialize)]
struct RequestLine<'a> {
    seq: u64,
    time: &'a str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_sha256: Option<&'a str>,
    /// `jwt-svid` for a JWT-SVID caller; absent for mTLS (X509-SVID) callers.
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'a str>,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_sha256: Option<&'a str>,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_sha256: Option<&'a str>,
    decision: Decision,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_sha256: Option<&'a str>,
    duration_us: u64,
    prev: &'a str,
}

/// Refusals not written individually, by kind.
#[derive(Debug, Serialize)]
struct Counts {
    rate_limited: u64,
    invalid: u64,
    denied: u64,
}

/// The line that closes a caller's refusal interval.
#[derive(Debug, Serialize)]
struct SummaryLine<'a> {
    seq: u64,
    time: &'a str,
    kind: &'static str,
    caller: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_len: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    caller_sha256: Option<&'a str>,
    counts: Counts,
    from: &'a str,
    to: &'a str,
    prev: &'a str,
}

/// What every line has, and all [`verify`] reads.
#[derive(Debug, Deserialize)]
struct Link {
    seq: u64,
    prev: String,
}

fn hash_hex(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

fn rfc3339(t: OffsetDateTime) -> String {
    // Only years beyond 9999 fail to format; the clock does not reach them.
    t.format(&Rfc3339).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Refusal aggregation
// ---------------------------------------------------------------------------------------------

/// The kinds of refusal that are summarised rather than written one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 429.
    RateLimited = 0,
    /// 400, 408, 413, 414.
    Invalid = 1,
    /// 401.
    Denied = 2,
}

impl Refusal {
    fn of(status: u16) -> Option<Self> {
        match status {
            429 => Some(Self::RateLimited),
            400 | 408 | 413 | 414 => Some(Self::Invalid),
            401 => Some(Self::Denied),
            _ => None,
        }
    }
}

/// One caller's open refusal interval.
#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    from: OffsetDateTime,
    to: OffsetDateTime,
    /// Whether the kind's first refusal in this interval is on record as its own line.
    logged: [bool; 3],
    /// Refusals counted (not written) since, by kind.
    counts: [u64; 3],
}

// ---------------------------------------------------------------------------------------------
// The chain and its files
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Rotation {
    path: PathBuf,
    max_bytes: u64,
    keep_files: u32,
}

struct Chain {
    writer: Box<dyn Write + Send>,
    /// For a file log: a handle to cut a partly written line off again.
    file: Option<File>,
    /// Bytes of complete lines in the current file.
    len: u64,
    /// A failed write may have left part of a line that could not be cut off.
    torn: bool,
    /// For a file log: where and when to rotate.
    rotation: Option<Rotation>,
    /// The current file was renamed away but its successor could not be created yet.
    detached: bool,
    prev: String,
    seq: u64,
}

impl Chain {
    fn new(writer: Box<dyn Write + Send>, file: Option<File>, len: u64) -> Self {
        Self {
            writer,
            file,
            len,
            torn: false,
            rotation: None,
            detached: false,
            prev: GENESIS.to_owned(),
            seq: 0,
        }
    }

    /// Writes and flushes the line `build(seq, prev)` makes, rotating first if it would not
    /// fit in the current file.
    fn append(
        &mut self,
        sink: &str,
        build: impl FnOnce(u64, &str) -> Vec<u8>,
    ) -> Result<(), AuditError> {
        let io_err = |source| AuditError::Io { path: sink.to_owned(), source };
        if self.torn {
            return Err(io_err(io::Error::other(
                "an earlier line was written only in part and could not be cut off; fix the \
                 disk and restart (reopening cuts the partial line off)",
            )));
        }
        let mut bytes = build(self.seq + 1, &self.prev);
        let hash = hash_hex(&bytes);
        bytes.push(b'\n');
        debug_assert!(bytes.len() <= MAX_LINE_BYTES, "an audit line exceeds MAX_LINE_BYTES");
        if let Some(r) = &self.rotation
            && (self.detached || (self.len > 0 && self.len + bytes.len() as u64 > r.max_bytes))
        {
            self.rotate().map_err(|source| AuditError::Rotate { path: sink.to_owned(), source })?;
        }
        let written = self.writer.write_all(&bytes).and_then(|()| self.writer.flush());
        if let Err(e) = written {
            let len = self.len;
            self.torn = self.file.as_ref().is_none_or(|f| f.set_len(len).is_err());
            return Err(io_err(e));
        }
        self.len += bytes.len() as u64;
        self.prev = hash;
        self.seq += 1;
        Ok(())
    }

    /// Moves the current file to `.1` (older ones up by one, the oldest deleted) and continues
    /// in a fresh file. Retried by the next line if creating the fresh file fails.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(r) = self.rotation.clone() else {
            return Ok(());
        };
        if !self.detached {
            shift_files(&r.path, r.keep_files)?;
            self.detached = true;
        }
        let (file, truncator) = open_append(&r.path)?;
        self.writer = Box::new(file);
        self.file = Some(truncator);
        self.len = 0;
        self.detached = false;
        tracing::info!(path = %r.path.display(), next_seq = self.seq + 1, "audit log rotated");
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<(File, File)> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let truncator = file.try_clone()?;
    Ok((file, truncator))
}

/// `path` with `.n` appended: the n-th newest rotated file.
fn numbered(path: &Path, n: u64) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The rotated files of the log at `path` (`path.1`, `path.2`, ...), oldest (highest number)
/// first. Gaps (a crash between two renames) are harmless: order is by number.
fn rotated_files(path: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix(base)?.strip_prefix('.'))
        else {
            continue;
        };
        if !suffix.is_empty()
            && suffix.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = suffix.parse::<u64>()
        {
            found.push((n, numbered(path, n)));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// Renames `path.n` to `path.n+1` from the oldest down (deleting what would pass `keep`
/// files), then `path` to `path.1`.
fn shift_files(path: &Path, keep: u32) -> io::Result<()> {
    let keep = u64::from(keep.max(1));
    for (n, file) in rotated_files(path)? {
        if n + 1 >= keep {
            std::fs::remove_file(&file)?;
        } else {
            std::fs::rename(&file, numbered(path, n + 1))?;
        }
    }
    if keep == 1 { std::fs::remove_file(path) } else { std::fs::rename(path, numbered(path, 1)) }
}

/// The end of an existing file: hash and sequence number of its last complete line, the
/// length in bytes of its complete (newline-terminated) lines, and how many there are.
#[derive(Debug)]
struct Tail {
    prev: String,
    seq: u64,
    len: u64,
    lines: u64,
}

fn last_link(mut reader: impl BufRead) -> io::Result<Tail> {
    let mut tail = Tail { prev: GENESIS.to_owned(), seq: 0, len: 0, lines: 0 };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        tail.len += n as u64;
        let line = &buf[..n - 1];
        if line.is_empty() {
            continue;
        }
        tail.prev = hash_hex(line);
        tail.seq = serde_json::from_slice::<Link>(line).map(|l| l.seq).unwrap_or(tail.seq + 1);
        tail.lines += 1;
    }
    Ok(tail)
}

/// The last line of the newest rotated file that has one: where the chain goes on when the
/// current file has no line yet (a crash between renaming it and creating its successor).
fn newest_rotated_tail(path: &Path) -> io::Result<Option<Tail>> {
    for (_, file) in rotated_files(path)?.into_iter().rev() {
        let tail = last_link(BufReader::new(File::open(&file)?))?;
        if tail.lines > 0 {
            return Ok(Some(tail));
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// The log
// ---------------------------------------------------------------------------------------------

struct Inner {
    chain: Chain,
    windows: HashMap<String, Window>,
}

impl Inner {
    /// Ends `caller`'s interval: writes its summary if it counted anything. On error the
    /// interval stays open, so its counts are not lost.
    fn close(&mut self, sink: &str, caller: &str) -> Result<(), AuditError> {
        if let Some(w) = self.windows.get(caller)
            && w.counts.iter().any(|&n| n > 0)
        {
            let w = *w;
            let caller = cap(caller, MAX_CALLER_BYTES);
            let (time, from, to) =
                (rfc3339(OffsetDateTime::now_utc()), rfc3339(w.from), rfc3339(w.to));
            self.chain.append(sink, |seq, prev| {
                let line = SummaryLine {
                    seq,
                    time: &time,
                    kind: SUMMARY_KIND,
                    caller: &caller.text,
                    caller_len: caller.len,
                    caller_sha256: caller.sha256.as_deref(),
                    counts: Counts {
                        rate_limited: w.counts[Refusal::RateLimited as usize],
                        invalid: w.counts[Refusal::Invalid as usize],
                        denied: w.counts[Refusal::Denied as usize],
                    },
                    from: &from,
                    to: &to,
                    prev,
                };
                // A struct of strings and integers always serialises.
                serde_json::to_vec(&line).unwrap_or_default()
            })?;
        }
        self.windows.remove(caller);
        Ok(())
    }

    /// Closes the intervals `due` selects, oldest first.
    fn close_where(&mut self, sink: &str, due: impl Fn(&Window) -> bool) -> Result<(), AuditError> {
        let mut callers: Vec<(Instant, String)> = self
            .windows
            .iter()
            .filter(|(_, w)| due(w))
            .map(|(caller, w)| (w.opened, caller.clone()))
            .collect();
        callers.sort();
        for (_, caller) in callers {
            self.close(sink, &caller)?;
        }
        Ok(())
    }
}

/// The audit log. Share it behind an `Arc`; [`AuditLog::record`] serialises writers.
pub struct AuditLog {
    name: String,
    interval: Duration,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("sink", &self.name).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Appends to the file at `path` with the default [`AuditLimits`], continuing the chain
    /// of the lines already there (or in its rotated files).
    pub fn open_file(path: &Path) -> Result<Self, AuditError> {
        Self::open_file_with(path, &AuditLimits::default())
    }

    /// Appends to the file at `path`, continuing the chain of the lines already there — or,
    /// when it has none, of the newest rotated file `path.N` — and rotating as `limits` say.
    pub fn open_file_with(path: &Path, limits: &AuditLimits) -> Result<Self, AuditError> {
        let io_err = |source| AuditError::Io { path: path.display().to_string(), source };
        let mut tail = match File::open(path) {
            Ok(f) => last_link(BufReader::new(f)).map_err(io_err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Tail { prev: GENESIS.to_owned(), seq: 0, len: 0, lines: 0 }
            }
            Err(e) => return Err(io_err(e)),
        };
        let len = tail.len;
        if tail.lines == 0
            && let Some(rotated) = newest_rotated_tail(path).map_err(io_err)?
        {
            tail = rotated;
        }
        let (file, truncator) = open_append(path).map_err(io_err)?;
        let on_disk = file.metadata().map_err(io_err)?.len();
        if on_disk > len {
            // Never acknowledged: the request whose line this was failed (see the module docs).
            tracing::warn!(
                path = %path.display(),
                bytes = on_disk - len,
                "audit log ends in an unterminated line; cutting it off"
            );
            file.set_len(len).map_err(io_err)?;
        }
        let mut chain = Chain::new(Box::new(file), Some(truncator), len);
        chain.prev = tail.prev;
        chain.seq = tail.seq;
        chain.rotation = Some(Rotation {
            path: path.to_owned(),
            max_bytes: limits.max_file_bytes,
            keep_files: limits.keep_files.max(1),
        });
        Ok(Self::with_chain(path.display().to_string(), chain, limits))
    }

    /// Writes a new chain to any writer (standard error, a buffer in tests), with the default
    /// [`AuditLimits`].
    pub fn to_writer(name: impl Into<String>, writer: Box<dyn Write + Send>) -> Self {
        Self::to_writer_with(name, writer, &AuditLimits::default())
    }

    /// Writes a new chain to any writer; `limits` apply except rotation (a writer has no
    /// files to rotate).
    pub fn to_writer_with(
        name: impl Into<String>,
        writer: Box<dyn Write + Send>,
        limits: &AuditLimits,
    ) -> Self {
        Self::with_chain(name.into(), Chain::new(writer, None, 0), limits)
    }

    fn with_chain(name: String, chain: Chain, limits: &AuditLimits) -> Self {
        Self {
            name,
            interval: limits.refusal_interval,
            inner: Mutex::new(Inner { chain, windows: HashMap::new() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where lines go, for messages.
    pub fn sink_name(&self) -> &str {
        &self.name
    }

    /// How long a caller's refusals are summarised before a summary line is due; call
    /// [`AuditLog::flush_due`] about this often.
    pub fn refusal_interval(&self) -> Duration {
        self.interval
    }

    /// The sequence number of the last line: lines written through this log since it was
    /// opened, plus those found on open (rotated files included).
    pub fn lines(&self) -> u64 {
        self.lock().chain.seq
    }

    /// Callers with an open refusal interval (at most [`MAX_AGGREGATED_CALLERS`]).
    pub fn tracked_callers(&self) -> usize {
        self.lock().windows.len()
    }

    /// Records one request: writes and flushes its line, or — for a repeated refusal within
    /// its caller's interval — counts it for the interval's summary (see the module docs). An
    /// error means the request is not on record, and the caller must fail it.
    pub fn record(&self, event: &AuditEvent<'_>) -> Result<(), AuditError> {
        self.record_at(event, Instant::now())
    }

    fn record_at(&self, event: &AuditEvent<'_>, now: Instant) -> Result<(), AuditError> {
        let fields = RequestFields::new(event);
        let mut inner = self.lock();
        let wall = OffsetDateTime::now_utc();
        let time = rfc3339(wall);
        let ended = |w: &Window| now.saturating_duration_since(w.opened) >= self.interval;
        if inner.windows.get(event.caller).is_some_and(ended) {
            inner.close(&self.name, event.caller)?;
        }
        let Some(kind) = Refusal::of(event.status) else {
            return inner.chain.append(&self.name, |seq, prev| fields.line(seq, &time, prev));
        };
        let k = kind as usize;
        if let Some(w) = inner.windows.get_mut(event.caller)
            && w.logged[k]
        {
            w.counts[k] += 1;
            w.to = wall;
            return Ok(());
        }
        if !inner.windows.contains_key(event.caller)
            && inner.windows.len() >= MAX_AGGREGATED_CALLERS
        {
            // Bounded memory: close the oldest interval early (one summary line at most).
            let oldest = inner.windows.iter().min_by_key(|(_, w)| w.opened).map(|(c, _)| c.clone());
            if let Some(oldest) = oldest {
                inner.close(&self.name, &oldest)?;
            }
        }
        inner.chain.append(&self.name, |seq, prev| fields.line(seq, &time, prev))?;
        let w = inner.windows.entry(event.caller.to_owned()).or_insert(Window {
            opened: now,
            from: wall,
            to: wall,
            logged: [false; 3],
            counts: [0; 3],
        });
        w.logged[k] = true;
        Ok(())
    }

    /// Writes the summaries of intervals that have ended (the periodic tick). On error the
    /// remaining intervals stay open for the next try.
    pub fn flush_due(&self) -> Result<(), AuditError> {
        self.flush_due_at(Instant::now())
    }

    fn flush_due_at(&self, now: Instant) -> Result<(), AuditError> {
        let interval = self.interval;
        self.lock().close_where(&self.name, |w| now.saturating_duration_since(w.opened) >= interval)
    }

    /// Writes the summary of every open interval, ended or not (shutdown; also done on drop).
    pub fn flush_all(&self) -> Result<(), AuditError> {
        self.lock().close_where(&self.name, |_| true)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.flush_all() {
            tracing::error!(error = %e, "cannot write the last audit refusal summaries");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------------------------

/// What [`verify`] or [`verify_file`] found in an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of lines checked.
    pub lines: u64,
    /// Number of files read (1 for a stream).
    pub files: usize,
    /// Sequence number of the first line on record (`None` when there is none).
    pub first_seq: Option<u64>,
    /// When the first line on record is not the chain's first (rotated files were deleted, or
    /// lines removed from the start): its `prev`, the hash of the last line that is gone.
    pub starts_after: Option<String>,
    /// The hash of the last line (the chain head).
    pub head: String,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files = if self.files == 1 { "file" } else { "files" };
        write!(f, "{} lines in {} {files}", self.lines, self.files)?;
        match (self.first_seq, &self.starts_after) {
            (None, _) => write!(f, " (no lines yet)")?,
            (Some(seq), None) => write!(f, ", first seq {seq} (the chain starts at genesis)")?,
            (Some(seq), Some(prev)) => write!(
                f,
                ", first seq {seq} (older lines were rotated away or removed; the surviving \
                 chain starts after the line with hash {prev})"
            )?,
        }
        write!(f, ", chain head {}", self.head)
    }
}

/// Checks lines one after another, across files.
struct Walker {
    /// A stream must start at genesis; a set of files may start where rotation left it.
    strict: bool,
    report: VerifyReport,
    seq: u64,
}

impl Walker {
    fn new(strict: bool) -> Self {
        let report = VerifyReport {
            lines: 0,
            files: 0,
            first_seq: None,
            starts_after: None,
            head: GENESIS.to_owned(),
        };
        Self { strict, report, seq: 0 }
    }

    fn file(&mut self, name: &str, reader: impl BufRead) -> Result<(), AuditError> {
        self.report.files += 1;
        for (i, line) in reader.lines().enumerate() {
            let n = i as u64 + 1;
            let line = line.map_err(|source| AuditError::Io { path: name.to_owned(), source })?;
            let broken =
                |reason: String| AuditError::Broken { file: name.to_owned(), line: n, reason };
            let link: Link = serde_json::from_str(&line)
                .map_err(|e| broken(format!("not an audit line: {e}")))?;
            if self.report.first_seq.is_none() {
                if link.prev == GENESIS {
                    if link.seq != 1 {
                        return Err(broken(format!(
                            "the chain's first line has sequence number {} instead of 1",
                            link.seq
                        )));
                    }
                } else if self.strict {
                    return Err(broken(
                        "its prev hash is not the genesis value (lines were removed from the \
                         start)"
                            .into(),
                    ));
                } else {
                    self.report.starts_after = Some(link.prev.clone());
                }
                self.report.first_seq = Some(link.seq);
            } else {
                if link.prev != self.report.head {
                    return Err(broken(
                        "its prev hash does not match the line before it (a line was removed, \
                         reordered or edited)"
                            .into(),
                    ));
                }
                if link.seq != self.seq + 1 {
                    return Err(broken(format!(
                        "sequence number {} where {} was expected",
                        link.seq,
                        self.seq + 1
                    )));
                }
            }
            self.seq = link.seq;
            self.report.head = hash_hex(line.as_bytes());
            self.report.lines += 1;
        }
        Ok(())
    }
}

/// Checks every line's `prev` and sequence number in one complete chain (it must start at
/// genesis); names the first line that breaks it.
pub fn verify(reader: impl BufRead) -> Result<VerifyReport, AuditError> {
    let mut walker = Walker::new(true);
    walker.file("input", reader)?;
    Ok(walker.report)
}

/// The files of the log at `path`, oldest first: its rotated files `path.N` (highest number
/// first) and then `path` itself, if it exists.
pub fn log_files(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let io_err = |source| AuditError::Io { path: path.display().to_string(), source };
    let mut files: Vec<PathBuf> =
        rotated_files(path).map_err(io_err)?.into_iter().map(|(_, f)| f).collect();
    if path.exists() {
        files.push(path.to_owned());
    }
    if files.is_empty() {
        return Err(io_err(io::Error::new(
            io::ErrorKind::NotFound,
            "no such audit log (nor rotated files next to it)",
        )));
    }
    Ok(files)
}

/// Verifies the log at `path` with its rotated files, oldest to newest, links across files
/// included; a break names the file and the line in it. The oldest surviving line may follow
/// lines that rotation deleted: the report says where the surviving chain starts. Run it on a
/// log that is not being rotated at that moment (a stopped Nexus, or copies), or retry.
pub fn verify_file(path: &Path) -> Result<VerifyReport, AuditError> {
    let mut walker = Walker::new(false);
    for file in log_files(path)? {
        let name = file.display().to_string();
        let reader =
            File::open(&file).map_err(|source| AuditError::Io { path: name.clone(), source })?;
        walker.file(&name, BufReader::new(reader))?;
    }
    Ok(walker.report)
}

/// A default location for the audit log inside a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u16) -> AuditEvent<'static> {
        AuditEvent {
            caller: "spiffe://spike.ist/spike/pilot/role/superuser",
            auth: AuthForm::X509Svid,
            route: "/v1/store/secrets",
            action: "get",
            path: Some("app/db"),
            decision: if i.is_multiple_of(2) { Decision::Allow } else { Decision::Deny },
            status: 200 + i,
            code: None,
            duration: Duration::from_micros(u64::from(i)),
        }
    }

    fn write_lines(path: &Path, n: u16) {
        let log = AuditLog::open_file(path).unwrap();
        for i in 0..n {
            log.record(&event(i)).unwrap();
        }
    }

    #[test]
    fn an_intact_chain_verifies_and_continues_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_lines(&path, 3);
        write_lines(&path, 2);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.lines, 5);
        assert_eq!((report.files, report.first_seq, report.starts_after), (1, Some(1), None));
    }

    #[test]
    fn a_removed_or_edited_line_is_detected_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_lines(&path, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        let removed = [lines[0], lines[2], lines[3]].join("\n");
        match verify(removed.as_bytes()) {
            Err(AuditError::Broken { line: 2, .. }) => {}
            other => panic!("expected a break at line 2, got {other:?}"),
        }

        let edited = text.replacen("\"decision\":\"deny\"", "\"decision\":\"allow\"", 1);
        assert!(matches!(verify(edited.as_bytes()), Err(AuditError::Broken { line: 3, .. })));

        // A stream must start at genesis: its first line cut off is a break too.
        let headless = [lines[1], lines[2]].join("\n");
        assert!(matches!(verify(headless.as_bytes()), Err(AuditError::Broken { line: 1, .. })));
    }

    #[test]
    fn an_unterminated_last_line_is_cut_off_on_open_and_the_chain_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_lines(&path, 2);
        let intact = std::fs::read(&path).unwrap();
        // What a full disk leaves: the start of a line, no newline.
        let mut torn = intact.clone();
        torn.extend_from_slice(b"{\"seq\":3,\"time\":\"2026-");
        std::fs::write(&path, &torn).unwrap();
        write_lines(&path, 2);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.lines, 4);
        assert!(std::fs::read(&path).unwrap().starts_with(&intact));
    }

    /// A disk that takes half a line, then is full, then has room again.
    struct FullOnce {
        calls: usize,
        taken: std::sync::Arc<Mutex<Vec<u8>>>,
    }

    impl Write for FullOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = match self.calls {
                1 => buf.len() / 2,
                2 => return Err(io::Error::other("disk full")),
                _ => buf.len(),
            };
            self.taken.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_written_in_part_that_cannot_be_cut_off_stops_the_log() {
        let taken = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log =
            AuditLog::to_writer("test", Box::new(FullOnce { calls: 0, taken: taken.clone() }));
        assert!(log.record(&event(0)).is_err());
        assert!(!taken.lock().unwrap().is_empty(), "half a line was written");
        // Another line would follow the partial one and break the chain: refused instead.
        let err = log.record(&event(1)).unwrap_err();
        assert!(err.to_string().contains("written only in part"), "{err}");
        assert_eq!(log.lines(), 0);
        assert!(!taken.lock().unwrap().ends_with(b"\n"), "nothing followed the partial line");
    }

    #[test]
    fn lines_hold_names_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_lines(&path, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        for field in ["\"caller\"", "\"route\"", "\"action\"", "\"path\"", "\"decision\""] {
            assert!(text.contains(field), "{field} missing in {text}");
        }
        assert!(!text.contains("value"));
    }

    // --- Bounds (issue 13) -------------------------------------------------------------------

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        fn lines(&self) -> Vec<serde_json::Value> {
            self.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    fn memory_log(interval: Duration) -> (AuditLog, Shared) {
        let out = Shared::default();
        let limits = AuditLimits { refusal_interval: interval, ..AuditLimits::default() };
        (AuditLog::to_writer_with("memory", Box::new(out.clone()), &limits), out)
    }

    fn refusal(caller: &str, status: u16) -> AuditEvent<'_> {
        AuditEvent {
            caller,
            auth: AuthForm::X509Svid,
            route: "/v1/store/secrets",
            action: "get",
            path: None,
            decision: if status == 401 { Decision::Deny } else { Decision::Allow },
            status,
            code: Some("api_bad_request"),
            duration: Duration::from_micros(3),
        }
    }

    #[test]
    fn short_values_are_written_byte_identical_to_the_uncapped_format() {
        let fields = RequestFields::new(&event(1));
        let line =
            String::from_utf8(fields.line(7, "2026-01-02T03:04:05.123456789Z", GENESIS)).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"seq":7,"time":"2026-01-02T03:04:05.123456789Z","caller":"spiffe://spike.ist/spike/pilot/role/superuser","route":"/v1/store/secrets","action":"get","path":"app/db","decision":"deny","status":201,"duration_us":1,"prev":"{GENESIS}"}}"#
            )
        );
    }

    #[test]
    fn long_values_are_cut_with_their_full_length_and_hash() {
        let route = format!("/v1/store/secrets/{}", "a".repeat(65_536 - 18));
        let path = "\u{1}".repeat(5000); // each escapes to 6 bytes: the cap is on encoded bytes
        let e = AuditEvent { route: &route, path: Some(&path), ..event(0) };
        let line = RequestFields::new(&e).line(1, "t", GENESIS);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let cut = v["route"].as_str().unwrap();
        assert!(cut.starts_with("/v1/store/secrets/aaa") && cut.ends_with('…'), "{cut}");
        assert!(cut.len() <= MAX_ROUTE_BYTES);
        assert_eq!(v["route_len"], 65_536);
        assert_eq!(v["route_sha256"], hash_hex(route.as_bytes()));
        assert_eq!(v["path_len"], 5000);
        assert_eq!(v["path_sha256"], hash_hex(path.as_bytes()));
        let encoded_path = serde_json::to_string(&v["path"]).unwrap();
        assert!(encoded_path.len() - 2 <= MAX_PATH_BYTES, "{}", encoded_path.len());
        // Fields within their caps get no extra fields.
        assert!(v.get("caller_len").is_none() && v.get("action_sha256").is_none());
        // The order of fields is fixed: the extra ones follow the field they describe.
        let text = String::from_utf8(line).unwrap();
        let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
        assert!(at("route") < at("route_len") && at("route_len") < at("route_sha256"));
        assert!(at("route_sha256") < at("action"));
        // A multi-byte character is never split.
        let wide = "é".repeat(100);
        let c = cap(&wide, 33);
        assert_eq!(c.text, format!("{}…", "é".repeat(15)));
    }

    #[test]
    fn a_line_never_exceeds_max_line_bytes_whatever_the_input() {
        let (log, out) = memory_log(Duration::from_secs(1));
        let quotes = "\"".repeat(70_000);
        let controls = "\u{1f}".repeat(70_000);
        let caller = format!("spiffe://spike.ist/{}", "c".repeat(2048));
        for (i, route) in [&quotes, &controls, &"r".repeat(65_536)].into_iter().enumerate() {
            let e = AuditEvent {
                caller: &caller,
                auth: AuthForm::JwtSvid,
                route,
                action: &controls,
                path: Some(&quotes),
                decision: Decision::Allow,
                status: u16::MAX - i as u16,
                code: Some(&controls),
                duration: Duration::MAX,
            };
            log.record_at(&e, Instant::now()).unwrap();
        }
        // And the longest summary line: maximal counts from a maximal caller.
        let now = Instant::now();
        log.record_at(&refusal(&caller, 429), now).unwrap();
        log.lock().windows.get_mut(caller.as_str()).unwrap().counts = [u64::MAX; 3];
        log.flush_all().unwrap();
        let text = out.text();
        assert_eq!(text.lines().count(), 5);
        for line in text.split_inclusive('\n') {
            assert!(line.len() <= MAX_LINE_BYTES, "{} bytes: {line}", line.len());
        }
        assert!(text.contains(SUMMARY_KIND));
    }

    #[test]
    fn repeated_refusals_in_an_interval_are_counted_and_summarised_once() {
        let (log, out) = memory_log(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let (a, b) = ("spiffe://spike.ist/a", "spiffe://spike.ist/b");
        // a: first refusal of each kind written, the rest counted.
        for i in 0..100 {
            log.record_at(&refusal(a, 414), at(i)).unwrap();
        }
        for i in 0..10 {
            log.record_at(&refusal(a, if i % 2 == 0 { 429 } else { 400 }), at(200 + i)).unwrap();
        }
        log.record_at(&refusal(a, 401), at(300)).unwrap();
        // Allowed requests are always written, inside an interval too.
        log.record_at(&AuditEvent { caller: a, ..event(0) }, at(400)).unwrap();
        log.record_at(&AuditEvent { caller: a, status: 404, ..event(0) }, at(401)).unwrap();
        // b is tracked separately.
        log.record_at(&refusal(b, 401), at(500)).unwrap();
        log.record_at(&refusal(b, 401), at(501)).unwrap();
        assert_eq!(log.tracked_callers(), 2);
        // written: a 414, a 429, a 401, a 200, a 404, b 401
        assert_eq!(out.lines().len(), 6);
        assert_eq!(log.lines(), 6);

        // Nothing is due before the interval ends.
        log.flush_due_at(at(999)).unwrap();
        assert_eq!(out.lines().len(), 6);

        // a's next request after the interval writes a's summary first, then its own line.
        log.record_at(&refusal(a, 414), at(1000)).unwrap();
        let lines = out.lines();
        assert_eq!(lines.len(), 8);
        let summary = &lines[6];
        assert_eq!(summary["kind"], SUMMARY_KIND);
        assert_eq!(summary["caller"], a);
        // 414 ×100 and 400 ×5 are one kind: 1 written, 104 counted; 429 ×5: 4 counted.
        assert_eq!(
            summary["counts"],
            serde_json::json!({"rate_limited":4,"invalid":104,"denied":0})
        );
        assert!(summary["from"].is_string() && summary["to"].is_string());
        assert_eq!(lines[7]["status"], 414);

        // The tick writes b's summary (its interval ended) but not a's new one.
        log.flush_due_at(at(1600)).unwrap();
        let lines = out.lines();
        assert_eq!(lines.len(), 9);
        assert_eq!(lines[8]["caller"], b);
        assert_eq!(lines[8]["counts"]["denied"], 1);
        assert_eq!(log.tracked_callers(), 1);

        // Every request is accounted for: written lines plus summary counts.
        let a_total: u64 = out
            .lines()
            .iter()
            .filter(|l| l["caller"] == a)
            .map(|l| match l.get("counts") {
                Some(c) => ["rate_limited", "invalid", "denied"]
                    .iter()
                    .map(|k| c[k].as_u64().unwrap())
                    .sum(),
                None => 1,
            })
            .sum();
        assert_eq!(a_total, 100 + 10 + 1 + 2 + 1);
        assert!(verify(out.text().as_bytes()).is_ok());
    }

    #[test]
    fn open_intervals_are_summarised_at_flush_all_and_on_drop() {
        let (log, out) = memory_log(Duration::from_secs(3600));
        let now = Instant::now();
        for _ in 0..3 {
            log.record_at(&refusal("spiffe://spike.ist/x", 429), now).unwrap();
        }
        log.flush_all().unwrap();
        assert_eq!(out.lines()[1]["counts"]["rate_limited"], 2);
        // An interval with nothing counted needs no summary.
        log.record_at(&refusal("spiffe://spike.ist/y", 429), now).unwrap();
        log.record_at(&refusal("spiffe://spike.ist/x", 401), now).unwrap();
        log.record_at(&refusal("spiffe://spike.ist/x", 401), now).unwrap();
        drop(log);
        let lines = out.lines();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[4]["kind"], SUMMARY_KIND);
        assert_eq!(lines[4]["counts"]["denied"], 1);
        assert!(verify(out.text().as_bytes()).is_ok());
    }

    #[test]
    fn tracked_callers_are_bounded_and_the_oldest_interval_is_closed_early() {
        let (log, out) = memory_log(Duration::from_secs(3600));
        let t0 = Instant::now();
        let callers: Vec<String> =
            (0..=MAX_AGGREGATED_CALLERS).map(|i| format!("spiffe://spike.ist/w{i}")).collect();
        for (i, c) in callers.iter().take(MAX_AGGREGATED_CALLERS).enumerate() {
            let at = t0 + Duration::from_micros(i as u64);
            log.record_at(&refusal(c, 401), at).unwrap();
            log.record_at(&refusal(c, 401), at).unwrap();
        }
        assert_eq!(log.tracked_callers(), MAX_AGGREGATED_CALLERS);
        let before = out.lines().len();
        log.record_at(&refusal(&callers[MAX_AGGREGATED_CALLERS], 401), t0).unwrap();
        assert_eq!(log.tracked_callers(), MAX_AGGREGATED_CALLERS);
        let lines = out.lines();
        assert_eq!(lines.len(), before + 2);
        assert_eq!(lines[before]["kind"], SUMMARY_KIND);
        assert_eq!(lines[before]["caller"], callers[0].as_str());
        assert_eq!(lines[before + 1]["caller"], callers[MAX_AGGREGATED_CALLERS].as_str());
    }

    #[test]
    fn a_refusal_whose_line_failed_is_not_counted_as_on_record() {
        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = AuditLog::to_writer("failing", Box::new(Failing));
        // Each refusal keeps trying to write its line (and failing), never silently counted.
        for _ in 0..3 {
            assert!(log.record(&refusal("spiffe://spike.ist/z", 401)).is_err());
        }
        assert_eq!(log.tracked_callers(), 0);
    }

    fn small_limits(keep: u32) -> AuditLimits {
        AuditLimits { max_file_bytes: 1000, keep_files: keep, ..AuditLimits::default() }
    }

    fn write_with(path: &Path, limits: &AuditLimits, n: u16) {
        let log = AuditLog::open_file_with(path, limits).unwrap();
        for i in 0..n {
            log.record(&event(i)).unwrap();
        }
    }

    #[test]
    fn rotation_keeps_one_chain_across_files_and_reopen_continues_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let limits = small_limits(100);
        write_with(&path, &limits, 20);
        write_with(&path, &limits, 20); // reopened: the chain goes on
        let files = log_files(&path).unwrap();
        assert!(files.len() >= 4, "{files:?}");
        assert_eq!(files.last().unwrap(), &path);
        assert_eq!(files[files.len() - 2], dir.path().join("audit.log.1"));
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 1000, "{}", f.display());
        }
        let report = verify_file(&path).unwrap();
        assert_eq!(report.lines, 40);
        assert_eq!((report.files, report.first_seq), (files.len(), Some(1)));
        assert_eq!(report.starts_after, None);
        // The first line of a newer file links to the last line of the older one.
        let older = std::fs::read_to_string(&files[0]).unwrap();
        let newer = std::fs::read_to_string(&files[1]).unwrap();
        let first: serde_json::Value = serde_json::from_str(newer.lines().next().unwrap()).unwrap();
        assert_eq!(first["prev"], hash_hex(older.lines().last().unwrap().as_bytes()));
        assert_eq!(
            report.to_string().split(',').next().unwrap(),
            format!("40 lines in {} files", files.len())
        );
    }

    #[test]
    fn rotation_deletes_beyond_keep_files_and_verify_says_where_the_chain_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_with(&path, &small_limits(3), 40);
        let files = log_files(&path).unwrap();
        assert_eq!(files.len(), 3, "{files:?}");
        let report = verify_file(&path).unwrap();
        let first = report.first_seq.unwrap();
        assert!(first > 1);
        assert_eq!(report.lines, 40 - first + 1);
        assert!(report.starts_after.is_some());
        assert!(
            report.to_string().contains(&format!("first seq {first} (older lines")),
            "{report}"
        );
    }

    #[test]
    fn verify_names_the_file_and_line_of_a_break_in_a_later_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_with(&path, &small_limits(100), 30);
        let files = log_files(&path).unwrap();
        assert!(files.len() >= 3);
        // Edit the first line of the second-oldest file: the line after it no longer links.
        let victim = &files[1];
        let text = std::fs::read_to_string(victim).unwrap();
        let edited = text.replacen("\"decision\":", "\"decision\": ", 1);
        assert_ne!(edited, text);
        std::fs::write(victim, &edited).unwrap();
        match verify_file(&path) {
            Err(AuditError::Broken { file, line: 2, .. }) => {
                assert_eq!(file, victim.display().to_string());
            }
            other => panic!("expected a break at {} line 2, got {other:?}", victim.display()),
        }

        // A whole middle file removed: the next file's first line no longer links.
        std::fs::write(victim, &text).unwrap();
        std::fs::remove_file(victim).unwrap();
        match verify_file(&path) {
            Err(AuditError::Broken { file, line: 1, .. }) => {
                assert_eq!(file, files[2].display().to_string());
            }
            other => panic!("expected a break at the start of the next file, got {other:?}"),
        }
    }

    #[test]
    fn a_crash_between_rename_and_create_continues_from_the_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let limits = small_limits(100);
        write_with(&path, &limits, 10);
        // What a crash right after renaming leaves: no current file; an empty one is the same.
        shift_files(&path, 100).unwrap();
        write_with(&path, &limits, 3);
        assert_eq!(verify_file(&path).unwrap().lines, 13);
        shift_files(&path, 100).unwrap();
        std::fs::write(&path, b"").unwrap();
        write_with(&path, &limits, 3);
        assert_eq!(verify_file(&path).unwrap().lines, 16);
    }

    #[test]
    fn keep_files_of_one_starts_each_file_where_the_last_ended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_with(&path, &small_limits(1), 12);
        assert_eq!(log_files(&path).unwrap(), vec![path.clone()]);
        let report = verify_file(&path).unwrap();
        assert_eq!(report.first_seq.unwrap() + report.lines - 1, 12);
    }
}
