//! A hash-chained, fail-closed audit log: one JSON line per request.
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

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The `prev` value of the first line of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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
    /// A line did not verify.
    #[error("audit chain broken at line {line}: {reason}")]
    Broken {
        /// 1-based line number.
        line: u64,
        /// What did not match.
        reason: String,
    },
}

impl AuditError {
    /// True when the sink could not be written for lack of space (see
    /// [`spike_core::error::is_out_of_space`]).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, AuditError::Io { source, .. } if spike_core::error::is_out_of_space(source))
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
    /// The URL path, e.g. `/v1/store/secrets`.
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

/// One line on disk, fields in a fixed order.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    seq: u64,
    time: String,
    caller: String,
    route: String,
    action: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    path: Option<String>,
    decision: Decision,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    code: Option<String>,
    duration_us: u64,
    prev: String,
}

struct Chain {
    writer: Box<dyn Write + Send>,
    /// For a file log: a handle to cut a partly written line off again.
    file: Option<File>,
    /// Bytes of complete lines in the file.
    len: u64,
    /// A failed write may have left part of a line that could not be cut off.
    torn: bool,
    prev: String,
    seq: u64,
}

impl Chain {
    fn new(writer: Box<dyn Write + Send>, file: Option<File>, len: u64) -> Self {
        Self { writer, file, len, torn: false, prev: GENESIS.to_owned(), seq: 0 }
    }
}

/// The audit log. Share it behind an `Arc`; [`AuditLog::record`] serialises writers.
pub struct AuditLog {
    name: String,
    chain: Mutex<Chain>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("sink", &self.name).finish_non_exhaustive()
    }
}

fn hash_hex(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

impl AuditLog {
    /// Appends to the file at `path`, continuing the chain of the lines already there.
    pub fn open_file(path: &Path) -> Result<Self, AuditError> {
        let io_err = |source| AuditError::Io { path: path.display().to_string(), source };
        let (prev, seq, len) = match File::open(path) {
            Ok(f) => last_link(BufReader::new(f)).map_err(io_err)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (GENESIS.to_owned(), 0, 0),
            Err(e) => return Err(io_err(e)),
        };
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io_err)?;
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
        let truncator = file.try_clone().map_err(io_err)?;
        let mut chain = Chain::new(Box::new(file), Some(truncator), len);
        chain.prev = prev;
        chain.seq = seq;
        Ok(Self { name: path.display().to_string(), chain: Mutex::new(chain) })
    }

    /// Writes a new chain to any writer (standard error, a buffer in tests).
    pub fn to_writer(name: impl Into<String>, writer: Box<dyn Write + Send>) -> Self {
        Self { name: name.into(), chain: Mutex::new(Chain::new(writer, None, 0)) }
    }

    /// Where lines go, for messages.
    pub fn sink_name(&self) -> &str {
        &self.name
    }

    /// Lines written through this log since it was opened, plus those found on open.
    pub fn lines(&self) -> u64 {
        self.chain.lock().unwrap_or_else(|p| p.into_inner()).seq
    }

    /// Writes and flushes one line. An error means the line is not on record, and the caller
    /// must fail the request.
    pub fn record(&self, event: &AuditEvent<'_>) -> Result<(), AuditError> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let io_err = |source| AuditError::Io { path: self.name.clone(), source };
        if chain.torn {
            return Err(io_err(io::Error::other(
                "an earlier line was written only in part and could not be cut off; fix the \
                 disk and restart (reopening cuts the partial line off)",
            )));
        }
        let line = Line {
            seq: chain.seq + 1,
            time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            caller: event.caller.to_owned(),
            route: event.route.to_owned(),
            action: event.action.to_owned(),
            path: event.path.map(str::to_owned),
            decision: event.decision,
            status: event.status,
            code: event.code.map(str::to_owned),
            duration_us: u64::try_from(event.duration.as_micros()).unwrap_or(u64::MAX),
            prev: chain.prev.clone(),
        };
        // A struct of strings and integers always serialises.
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        let hash = hash_hex(&bytes);
        bytes.push(b'\n');
        let written = chain.writer.write_all(&bytes).and_then(|()| chain.writer.flush());
        if let Err(e) = written {
            let len = chain.len;
            chain.torn = chain.file.as_ref().is_none_or(|f| f.set_len(len).is_err());
            return Err(io_err(e));
        }
        chain.len += bytes.len() as u64;
        chain.prev = hash;
        chain.seq += 1;
        Ok(())
    }
}

/// The hash and sequence number of the last complete line of an existing log, and the length
/// in bytes of its complete (newline-terminated) lines.
fn last_link(mut reader: impl BufRead) -> io::Result<(String, u64, u64)> {
    let mut prev = GENESIS.to_owned();
    let mut seq = 0;
    let mut len = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        len += n as u64;
        let line = &buf[..n - 1];
        if line.is_empty() {
            continue;
        }
        prev = hash_hex(line);
        seq = serde_json::from_slice::<Line>(line).map(|l| l.seq).unwrap_or(seq + 1);
    }
    Ok((prev, seq, len))
}

/// What [`verify`] found in an intact log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of lines checked.
    pub lines: u64,
    /// The hash of the last line (the chain head).
    pub head: String,
}

/// Checks every line's `prev` and sequence number; names the first line that breaks the chain.
pub fn verify(reader: impl BufRead) -> Result<VerifyReport, AuditError> {
    let mut prev = GENESIS.to_owned();
    let mut n = 0u64;
    for line in reader.lines() {
        n += 1;
        let line = line.map_err(|source| AuditError::Io { path: "input".into(), source })?;
        let broken = |reason: String| AuditError::Broken { line: n, reason };
        let parsed: Line =
            serde_json::from_str(&line).map_err(|e| broken(format!("not an audit line: {e}")))?;
        if parsed.prev != prev {
            return Err(broken(
                "its prev hash does not match the line before it (a line was removed, \
                 reordered or edited)"
                    .into(),
            ));
        }
        if parsed.seq != n {
            return Err(broken(format!("sequence number {} where {n} was expected", parsed.seq)));
        }
        prev = hash_hex(line.as_bytes());
    }
    Ok(VerifyReport { lines: n, head: prev })
}

/// Verifies the log file at `path`.
pub fn verify_file(path: &Path) -> Result<VerifyReport, AuditError> {
    let file = File::open(path)
        .map_err(|source| AuditError::Io { path: path.display().to_string(), source })?;
    verify(BufReader::new(file))
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
}
