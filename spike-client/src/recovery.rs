//! Break-the-glass shard files: what `spike operator recover` writes and `spike operator
//! restore` reads, in SPIKE's format so shards carry over between SPIKE and spike-rs.
//!
//! One file per shard, `spike.recovery.<id>.txt`, holding `spike:<id>:<64 lowercase hex
//! digits>` (no newline; a trailing newline is accepted on reading). Files are created with
//! mode 0600 in a directory of mode 0700; writing first removes older `spike.recovery*.txt`
//! files, so a stale shard never sits next to fresh ones. Shard bytes are held in zeroizing
//! buffers and never appear in errors.
//!
//! ```no_run
//! # async fn demo(spike: spike_client::Spike) -> Result<(), spike_client::Error> {
//! use spike_client::recovery;
//!
//! let dir = recovery::recovery_dir_from_env();
//! let written = recovery::write_shards(&dir, &spike.recover().await?)?;
//! eprintln!("{}", recovery::OFFLINE_WARNING);
//!
//! // ...after a total loss, feed them back one at a time:
//! for share in recovery::read_shards(&dir)? {
//!     let status = spike.restore(&share).await?;
//!     println!("{} of {} received", status.collected, status.collected + status.remaining);
//! }
//! # let _ = written; Ok(()) }
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use spike_core::secret::{KEY_LEN, KeeperShare};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// The directory setting SPIKE's Pilot reads (files go to its `recover` subdirectory).
pub const ENV_RECOVERY_DIR: &str = "SPIKE_PILOT_RECOVERY_DIR";

/// File names start with this (SPIKE's).
pub const FILE_PREFIX: &str = "spike.recovery.";

/// File names end with this.
pub const FILE_SUFFIX: &str = ".txt";

/// What to tell the operator after writing shards.
pub const OFFLINE_WARNING: &str = "WARNING: these files are your root key's shards. Anyone \
    holding the threshold of them can read every secret. Encrypt them, move them offline now \
    (separate custodians and places), then securely erase them here. Without them, a total \
    loss of Nexus and its Keepers cannot be undone.";

/// Where shards go, as SPIKE's Pilot decides: `$SPIKE_PILOT_RECOVERY_DIR/recover`, else
/// `~/.spike/recover`, else `/tmp/.spike-$USER/recover`.
pub fn recovery_dir_from_env() -> PathBuf {
    if let Some(custom) = crate::config::env(ENV_RECOVERY_DIR) {
        return PathBuf::from(custom).join("recover");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home).join(".spike").join("recover");
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    PathBuf::from(format!("/tmp/.spike-{user}")).join("recover")
}

/// The file name of shard `id`: `spike.recovery.<id>.txt`.
pub fn file_name(id: u8) -> String {
    format!("{FILE_PREFIX}{id}{FILE_SUFFIX}")
}

/// A shard as SPIKE writes it: `spike:<id>:<hex>`.
pub fn encode_shard(share: &KeeperShare) -> Zeroizing<String> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(String::with_capacity(16 + 2 * KEY_LEN));
    out.push_str(&format!("spike:{}:", share.index()));
    for b in share.expose_secret() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses `spike:<id>:<64 hex digits>` (surrounding whitespace allowed). Errors never quote
/// the input.
pub fn decode_shard(text: &str) -> Result<KeeperShare> {
    let bad = |reason: &str| Error::InvalidInput {
        what: "recovery shard".into(),
        reason: format!("{reason}; expected \"spike:<id>:<64 hex digits>\""),
    };
    let mut parts = text.trim().splitn(3, ':');
    if parts.next() != Some("spike") {
        return Err(bad("it does not start with \"spike:\""));
    }
    let id: u8 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|&id| id != 0)
        .ok_or_else(|| bad("the shard id is not a number between 1 and 255"))?;
    let hex = parts.next().ok_or_else(|| bad("the shard bytes are missing"))?.as_bytes();
    if hex.len() != 2 * KEY_LEN {
        return Err(bad("the shard is not 64 hex digits long"));
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    for (slot, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_digit(pair[0]).ok_or_else(|| bad("the shard has a non-hex character"))?;
        let lo = hex_digit(pair[1]).ok_or_else(|| bad("the shard has a non-hex character"))?;
        *slot = (hi << 4) | lo;
    }
    if bytes.iter().all(|&b| b == 0) {
        return Err(bad("the shard is all zeros"));
    }
    Ok(KeeperShare::new(id, &mut bytes))
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::InvalidInput { what: path.display().to_string(), reason: format!("{what}: {e}") }
}

/// Writes one file per shard into `dir` (created with mode 0700 if missing), each with mode
/// 0600, after removing older `spike.recovery*.txt` files there. Returns the files written,
/// in shard order. Show the operator [`OFFLINE_WARNING`] afterwards.
pub fn write_shards(dir: &Path, shares: &[KeeperShare]) -> Result<Vec<PathBuf>> {
    if shares.is_empty() {
        return Err(Error::InvalidInput {
            what: "recovery shards".into(),
            reason: "Nexus returned none; nothing was written".into(),
        });
    }
    create_private_dir(dir)?;
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("cannot read", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot read", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("spike.recovery") && name.ends_with(FILE_SUFFIX) {
            // A stale shard left next to fresh ones is a security problem, not a cosmetic one.
            std::fs::remove_file(entry.path())
                .map_err(|e| io_error("cannot remove the old shard file", &entry.path(), e))?;
        }
    }
    let mut sorted: Vec<&KeeperShare> = shares.iter().collect();
    sorted.sort_by_key(|s| s.index());
    let mut written = Vec::with_capacity(sorted.len());
    for share in sorted {
        let path = dir.join(file_name(share.index()));
        let mut file = open_private(&path)?;
        let text = encode_shard(share);
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error("cannot write", &path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// Reads every `spike.recovery.<id>.txt` in `dir`, sorted by id. A file whose content names
/// another id than its file name is refused; other files are ignored.
pub fn read_shards(dir: &Path) -> Result<Vec<KeeperShare>> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("cannot read", dir, e))?;
    let mut shares = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot read", dir, e))?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FILE_PREFIX))
            .and_then(|n| n.strip_suffix(FILE_SUFFIX))
            .and_then(|n| n.parse::<u8>().ok())
        else {
            continue;
        };
        let share = read_shard_file(&entry.path())?;
        if share.index() != id {
            return Err(Error::InvalidInput {
                what: format!("recovery shard file {}", entry.path().display()),
                reason: format!(
                    "it holds shard {} but is named for shard {id}; rename or remove it",
                    share.index()
                ),
            });
        }
        shares.push(share);
    }
    if shares.is_empty() {
        return Err(Error::InvalidInput {
            what: format!("recovery directory {}", dir.display()),
            reason: "it holds no spike.recovery.<id>.txt files; copy the shards from \
                     `spike operator recover` there"
                .into(),
        });
    }
    shares.sort_by_key(KeeperShare::index);
    Ok(shares)
}

/// Reads one shard file.
pub fn read_shard_file(path: &Path) -> Result<KeeperShare> {
    let mut raw =
        Zeroizing::new(std::fs::read(path).map_err(|e| io_error("cannot read", path, e))?);
    let parsed = std::str::from_utf8(&raw)
        .map_err(|_| Error::InvalidInput {
            what: format!("recovery shard file {}", path.display()),
            reason: "it is not text; expected \"spike:<id>:<64 hex digits>\"".into(),
        })
        .and_then(decode_shard)
        .map_err(|e| match e {
            Error::InvalidInput { reason, .. } => Error::InvalidInput {
                what: format!("recovery shard file {}", path.display()),
                reason,
            },
            other => other,
        });
    raw.zeroize();
    parsed
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error("cannot create the recovery directory", dir, e))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| io_error("cannot create the recovery directory", dir, e))
}

#[cfg(unix)]
fn open_private(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error("cannot create", path, e))
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error("cannot create", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(id: u8, byte: u8) -> KeeperShare {
        KeeperShare::new(id, &mut [byte; KEY_LEN])
    }

    #[test]
    fn shards_round_trip_in_spike_format() {
        let text = encode_shard(&share(3, 0xAB));
        assert_eq!(&*text, &format!("spike:3:{}", "ab".repeat(32)));
        let back = decode_shard(&format!("{}\n", &*text)).unwrap();
        assert_eq!(back.index(), 3);
        assert_eq!(back.expose_secret(), &[0xAB; 32]);
    }

    #[test]
    fn malformed_shards_are_refused_without_echoing_them() {
        let secret_looking = "c0ffee".repeat(10);
        for bad in [
            format!("spike:1:{secret_looking}"),
            format!("spik:1:{}", "ab".repeat(32)),
            format!("spike:0:{}", "ab".repeat(32)),
            format!("spike:256:{}", "ab".repeat(32)),
            format!("spike:1:{}zz", "ab".repeat(31)),
            format!("spike:1:{}", "00".repeat(32)),
        ] {
            let err = decode_shard(&bad).unwrap_err().to_string();
            assert!(!err.contains(&secret_looking) && !err.contains("abab"), "{err}");
            assert!(err.contains("spike:<id>:<64 hex digits>"), "{err}");
        }
    }

    #[test]
    fn files_are_private_replace_stale_ones_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("recover");
        write_shards(&dir, &[share(1, 9), share(2, 9), share(3, 9)]).unwrap();
        let written = write_shards(&dir, &[share(2, 2), share(1, 1)]).unwrap();
        assert_eq!(
            written,
            vec![dir.join("spike.recovery.1.txt"), dir.join("spike.recovery.2.txt")]
        );
        assert!(!dir.join("spike.recovery.3.txt").exists(), "stale shard left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            for path in &written {
                assert_eq!(mode(path), 0o600);
            }
        }
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let shares = read_shards(&dir).unwrap();
        assert_eq!(shares.iter().map(KeeperShare::index).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(shares[1].expose_secret(), &[2; 32]);

        std::fs::write(dir.join("spike.recovery.2.txt"), &*encode_shard(&share(5, 5))).unwrap();
        let err = read_shards(&dir).unwrap_err().to_string();
        assert!(err.contains("named for shard 2"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        let err = read_shards(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no spike.recovery"), "{err}");
    }
}
