//! Printing results: `table` (for people), `json` and `yaml` (for programs).
//!
//! The JSON shapes are stable (YAML has the same structure):
//!
//! | command | JSON |
//! |---|---|
//! | `secret get` | `{"key": "value", ...}`; with a key or `--field`: the value as a JSON string |
//! | `secret list` | `["path", ...]` |
//! | `secret metadata` | SPIKE's `{"versions": {"N": {createdTime, version, deletedTime}}, "metadata": {currentVersion, oldestVersion, createdTime, updatedTime, maxVersions}}` |
//! | `policy get` | SPIKE's policy object: `{id, name, spiffiedPattern, pathPattern, permissions, createdAt, updatedAt}` (SPIKE's spelling) |
//! | `policy list` | `[{"id": "", "name": "..."}, ...]` |
//!
//! Secret values pass through buffers that are zeroized when dropped.

use std::io::Write;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::Format;
use crate::exit::CliError;

/// Writes `text` to standard output. A closed pipe (`spike ... | head`) is not an error.
pub fn stdout(text: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => {
            other.map_err(|source| CliError::Stdio { action: "write", stream: "output", source })
        }
    }
}

/// Writes a line to standard output.
pub fn line(text: &str) -> Result<(), CliError> {
    let mut buf = Zeroizing::new(String::with_capacity(text.len() + 1));
    buf.push_str(text);
    buf.push('\n');
    stdout(buf.as_bytes())
}

/// Serialises `value` as JSON (pretty) or YAML into a zeroizing buffer, ending in a newline.
pub fn structured<T: Serialize + ?Sized>(
    format: Format,
    value: &T,
) -> Result<Zeroizing<String>, CliError> {
    let mut text = match format {
        Format::Yaml => serde_norway::to_string(value)
            .map_err(|e| CliError::Usage(format!("cannot format the result as YAML: {e}")))?,
        Format::Json | Format::Table => serde_json::to_string_pretty(value)
            .map_err(|e| CliError::Usage(format!("cannot format the result as JSON: {e}")))?,
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(Zeroizing::new(text))
}

/// Prints `value` as JSON or YAML.
pub fn print_structured<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<(), CliError> {
    stdout(structured(format, value)?.as_bytes())
}

/// A go-style timestamp for people: `2006-01-02 15:04:05 UTC`.
pub fn human_time(t: &time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
