//! Encoding: [`encode`] and [`decode`] bodies exactly as Go's `encoding/json` does, and Go's
//! `time.Time` text form ([`format_go_time`], [`parse_go_time`]).

use std::io;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::datetime;
use zeroize::Zeroizing;

/// Why a body could not be decoded. Carries only a position, never input bytes, so it is safe
/// to log even when the body held secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("body is not valid SPIKE v1 JSON ({category} error at line {line}, column {column})")]
pub struct DecodeError {
    /// 1-based line of the failure.
    pub line: usize,
    /// 1-based column of the failure.
    pub column: usize,
    /// `syntax`, `data` (wrong shape or type), `eof` or `io`.
    pub category: &'static str,
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        DecodeError { line: e.line(), column: e.column(), category }
    }
}

/// Decodes a request or response body. Errors never echo the input (serde's own messages
/// may quote a misplaced secret), so they are safe to log.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(body).map_err(DecodeError::from)
}

/// Encodes a body exactly as Go's `json.Marshal` would (compact, HTML-escaped), into a buffer
/// that is zeroized on drop, and whose earlier, smaller allocations were zeroized before they
/// were freed (no reallocation leaves copies of a secret behind).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
    let mut out = ZeroizingWriter(Zeroizing::new(Vec::with_capacity(ENCODE_START)));
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, GoFormatter))?;
    Ok(out.0)
}

/// First capacity of an [`encode`] buffer: most bodies fit, larger ones grow by doubling.
const ENCODE_START: usize = 2048;

/// A growable buffer that moves to a larger allocation by itself, zeroizing the old one, so
/// no copy of what it held is left in freed memory.
struct ZeroizingWriter(Zeroizing<Vec<u8>>);

impl io::Write for ZeroizingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let needed = self.0.len() + buf.len();
        if needed > self.0.capacity() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * self.0.capacity())));
            bigger.extend_from_slice(&self.0);
            // The old allocation is zeroized when it drops here.
            self.0 = bigger;
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// serde_json's compact output plus Go's `escapeHTML`: Go's `json.Marshal` escapes `<`, `>`,
/// `&`, U+2028 and U+2029 (encoding/json `appendString`). Control characters already match
/// (Go ≥ 1.22 writes `\b` and `\f` like serde_json, others as lowercase `\u00XX`).
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        // Fast path: most strings hold none of the bytes that can start an escape (`<`, `>`,
        // `&`, and 0xE2, the lead byte of U+2028 and U+2029); checked 16 bytes at a time so
        // the compiler can vectorise it.
        if !bytes.chunks(16).any(|chunk| chunk.iter().fold(false, |hit, &b| hit | may_escape(b))) {
            return writer.write_all(bytes);
        }
        let mut start = 0;
        for (i, ch) in fragment.char_indices() {
            let escaped: &[u8] = match ch {
                '<' => b"\\u003c",
                '>' => b"\\u003e",
                '&' => b"\\u0026",
                '\u{2028}' => b"\\u2028",
                '\u{2029}' => b"\\u2029",
                _ => continue,
            };
            writer.write_all(&bytes[start..i])?;
            writer.write_all(escaped)?;
            start = i + ch.len_utf8();
        }
        writer.write_all(&bytes[start..])
    }
}

/// True for a byte that starts a character Go escapes in strings: `<`, `>`, `&`, or 0xE2 (the
/// first byte of U+2028 and U+2029, and of other characters, which the slow path tells apart).
fn may_escape(b: u8) -> bool {
    b == b'<' || b == b'>' || b == b'&' || b == 0xE2
}

/// Go's zero `time.Time`, which zero-valued structs marshal as `"0001-01-01T00:00:00Z"`.
pub const GO_ZERO_TIME: OffsetDateTime = datetime!(0001-01-01 00:00:00 UTC);

/// Formats a time as Go's `time.Time.MarshalJSON` does (layout RFC3339Nano): fraction trimmed
/// of trailing zeros and dropped when zero, `Z` for a zero offset, else `±hh:mm`. `None` when
/// the year is outside 0..=9999 or the offset is 24 hours or more, which Go refuses to marshal.
pub fn format_go_time(t: &OffsetDateTime) -> Option<String> {
    let year = t.year();
    // Go's appendStrictRFC3339 refuses years outside 0..=9999 and zone hours above 23.
    if !(0..=9999).contains(&year) || t.offset().whole_hours().unsigned_abs() > 23 {
        return None;
    }
    let mut s = format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset_seconds = t.offset().whole_seconds();
    if offset_seconds == 0 {
        s.push('Z');
    } else {
        // Go divides to whole minutes first and takes the sign from that (time/format.go).
        let mut zone = offset_seconds / 60;
        if zone < 0 {
            s.push('-');
            zone = -zone;
        } else {
            s.push('+');
        }
        s.push_str(&format!("{:02}:{:02}", zone / 60, zone % 60));
    }
    Some(s)
}

/// Parses a time as Go's `time.Time.UnmarshalJSON` does (strict RFC 3339): a `T` separator,
/// seconds 00..59, any number of fraction digits, `Z` or `±hh:mm`.
pub fn parse_go_time(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    // The `time` crate also takes a space or lowercase `z`, and leap seconds; Go does not.
    if b.len() < 20 || b[10] != b'T' || b.get(17..19) == Some(b"60".as_slice()) || s.ends_with('z')
    {
        return None;
    }
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
