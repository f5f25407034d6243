//! `spike cipher encrypt|decrypt`: streaming (binary) by default, SPIKE's JSON form on request.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use spike_client::api::cipher::Ciphertext;

use super::{client, read_file, read_stdin};
use crate::cli::{CipherCmd, Connection};
use crate::exit::CliError;
use crate::output;

/// Runs one `spike cipher` subcommand.
pub async fn run(conn: &Connection, cmd: CipherCmd) -> Result<(), CliError> {
    match cmd {
        CipherCmd::Encrypt { file, out, plaintext, algorithm: _ } => {
            if let Some(b64) = plaintext {
                if file.is_some() {
                    return Err(CliError::Usage("give --plaintext or --file, not both".into()));
                }
                let plain = zeroize::Zeroizing::new(
                    B64.decode(b64.trim())
                        .map_err(|_| CliError::Usage("--plaintext is not valid base64".into()))?,
                );
                let sealed = client(conn).await?.encrypt(&plain).await?;
                let json = serde_json::json!({
                    "version": sealed.version,
                    "nonce": B64.encode(&sealed.nonce),
                    "ciphertext": B64.encode(&sealed.ciphertext),
                });
                let mut text = json.to_string();
                text.push('\n');
                return write_out(out.as_deref(), text.as_bytes());
            }
            let input = read_input(file.as_deref())?;
            let framed = client(conn).await?.encrypt_bytes(&input).await?;
            write_out(out.as_deref(), &framed)
        }
        CipherCmd::Decrypt { file, out, version, nonce, ciphertext, algorithm: _ } => {
            let json_mode = version.is_some() || nonce.is_some() || ciphertext.is_some();
            if json_mode {
                let (Some(version), Some(nonce), Some(ciphertext)) = (version, nonce, ciphertext)
                else {
                    return Err(CliError::Usage(
                        "JSON mode needs all of --version, --nonce and --ciphertext".into(),
                    ));
                };
                if file.is_some() {
                    return Err(CliError::Usage(
                        "give --file or the JSON mode flags, not both".into(),
                    ));
                }
                let sealed = Ciphertext {
                    version,
                    nonce: B64
                        .decode(nonce.trim())
                        .map_err(|_| CliError::Usage("--nonce is not valid base64".into()))?,
                    ciphertext: B64
                        .decode(ciphertext.trim())
                        .map_err(|_| CliError::Usage("--ciphertext is not valid base64".into()))?,
                };
                let plain = client(conn).await?.decrypt(&sealed).await.map_err(undecryptable)?;
                return write_out(out.as_deref(), &plain);
            }
            let input = read_input(file.as_deref())?;
            let plain = client(conn).await?.decrypt_bytes(&input).await.map_err(undecryptable)?;
            write_out(out.as_deref(), &plain)
        }
    }
}

/// Nexus refusing to open a ciphertext (SPIKE answers 500 in JSON mode, 400 when streaming)
/// becomes a message that says what that means (issue 18); other errors pass through.
fn undecryptable(e: spike_client::Error) -> CliError {
    match e {
        spike_client::Error::Server { status: 500, .. } | spike_client::Error::BadRequest(_) => {
            CliError::Undecryptable
        }
        other => other.into(),
    }
}

fn read_input(file: Option<&Path>) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    match file {
        Some(path) if path.as_os_str() != "-" => read_file(path),
        _ => read_stdin(),
    }
}

/// Writes to `out` (created with mode 0600: it may be plaintext) or standard output.
fn write_out(out: Option<&Path>, bytes: &[u8]) -> Result<(), CliError> {
    match out {
        Some(path) if path.as_os_str() != "-" => write_private(path, bytes),
        _ => output::stdout(bytes),
    }
}

/// Writes `bytes` to a new or truncated file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path: PathBuf = path.to_path_buf();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| CliError::io("create", &path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| CliError::io("write", &path, e))
}
