//! `spike operator recover|restore|rotate`.

use std::io::{IsTerminal, Read};

use zeroize::Zeroizing;

use super::client;
use crate::cli::{Connection, OperatorCmd};
use crate::exit::CliError;
use spike_client::recovery;

use crate::output;

/// Runs one `spike operator` subcommand.
pub async fn run(conn: &Connection, cmd: OperatorCmd) -> Result<(), CliError> {
    match cmd {
        OperatorCmd::Recover { dir } => {
            let dir = dir.unwrap_or_else(recovery::recovery_dir_from_env);
            let shares = client(conn).await?.recover().await?;
            let files = recovery::write_shards(&dir, &shares)?;
            output::line(&format!(
                "Saved {} recovery shards to {}:\n{}\n\n{}",
                files.len(),
                dir.display(),
                files.iter().map(|f| format!("  {}", f.display())).collect::<Vec<_>>().join("\n"),
                recovery::OFFLINE_WARNING
            ))
        }
        OperatorCmd::Restore { file } => {
            let shares = if file.is_empty() {
                {
                    let text = read_shard_from_stdin()?;
                    let text = std::str::from_utf8(&text).map_err(|_| {
                        CliError::Usage("standard input is not a shard (spike:ID:HEX)".into())
                    })?;
                    vec![recovery::decode_shard(text)?]
                }
            } else {
                file.iter().map(|f| recovery::read_shard_file(f)).collect::<Result<Vec<_>, _>>()?
            };
            let spike = client(conn).await?;
            let mut last = None;
            for share in &shares {
                let status = spike.restore(share).await?;
                last = Some(status);
                if status.restored {
                    break;
                }
            }
            match last {
                Some(s) if s.restored => output::line("SPIKE Nexus is restored and ready to use."),
                Some(s) => output::line(&format!(
                    "Shards collected: {}\nShards remaining: {}\nRun `spike operator restore` \
                     again with the next shard.",
                    s.collected, s.remaining
                )),
                None => Err(CliError::Usage("no shard given".into())),
            }
        }
        OperatorCmd::Rotate { root_key: true } => {
            let keepers = client(conn).await?.rotate_root_key().await?;
            let held = if keepers == 0 {
                "no Keepers take part".to_owned()
            } else {
                format!("{keepers} Keepers hold shards of the new key")
            };
            output::line(&format!(
                "Root key rotated: {held}.\nRecovery shards exported before now no longer work: \
                 run `spike operator recover` and store the new ones offline."
            ))
        }
        OperatorCmd::ImportSpike { db, shards, dry_run, force } => {
            super::import::import_spike(conn, &db, &shards, dry_run, force).await
        }
        OperatorCmd::LegacyCipherKey { retire } => {
            super::import::legacy_cipher_key(conn, retire).await
        }
        OperatorCmd::Rotate { root_key: false } => {
            let term = client(conn).await?.rotate().await?;
            output::line(&format!(
                "Rotated: new writes use data-key term {term}; older records are re-encrypted \
                 in the background."
            ))
        }
    }
}

/// Reads one shard line from standard input, with echo off on a terminal.
fn read_shard_from_stdin() -> Result<Zeroizing<Vec<u8>>, CliError> {
    let stdin = std::io::stdin();
    let io_err = |source| CliError::Stdio { action: "read", stream: "input", source };
    if !stdin.is_terminal() {
        let mut buf = Zeroizing::new(Vec::new());
        stdin.lock().take(4096).read_to_end(&mut buf).map_err(io_err)?;
        return Ok(buf);
    }
    eprintln!("(your input will be hidden as you paste or type it)");
    eprint!("Enter recovery shard: ");
    let fd = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&fd).map_err(|e| io_err(e.into()))?;
    let mut hidden = saved.clone();
    hidden.local_modes.remove(rustix::termios::LocalModes::ECHO);
    rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &hidden)
        .map_err(|e| io_err(e.into()))?;
    let mut line = Zeroizing::new(String::new());
    let read = std::io::BufRead::read_line(&mut stdin.lock().take(4096), &mut line);
    // Restore echo before reporting anything, even on error.
    let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(io_err)?;
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}
