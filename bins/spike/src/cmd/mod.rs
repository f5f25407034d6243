//! One module per command family; each turns parsed arguments into SDK calls and output.

pub mod cipher;
pub mod dev;
pub mod exec;
pub mod import;
pub mod operator;
pub mod policy;
pub mod secret;

use std::io::{BufRead, Read};
use std::time::Duration;

use spike_client::Spike;

use crate::cli::{Cli, Command, Connection};
use crate::exit::{self, CliError};

/// Largest input read from standard input or a file (secrets, policies, cipher payloads).
pub const MAX_INPUT: u64 = 64 << 20;

/// Runs the parsed command line; returns the exit code (`spike exec` passes its command's).
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    let conn = cli.conn;
    match cli.command {
        Command::Secret(cmd) => secret::run(&conn, cmd).await,
        Command::Policy(cmd) => policy::run(&conn, cmd).await,
        Command::Cipher(cmd) => cipher::run(&conn, cmd).await,
        Command::Operator(cmd) => operator::run(&conn, cmd).await,
        Command::Exec(args) => return exec::run(&conn, args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "spike", &mut out);
            crate::output::stdout(&out)
        }
    }?;
    Ok(exit::OK)
}

/// A client for the connection settings (flags over SPIKE's environment variables).
pub async fn client(conn: &Connection) -> Result<Spike, CliError> {
    let mut builder = Spike::builder();
    if let Some(url) = &conn.nexus_url {
        builder = builder.url(url);
    }
    if let Some(socket) = &conn.socket {
        builder = builder.socket(socket);
    }
    if let Some(t) = &conn.timeout {
        builder = builder.timeout(parse_duration("--timeout", t)?);
    }
    if let Some(audience) = &conn.jwt_audience {
        builder = builder.jwt_audience(audience);
    }
    let spike = builder.build().await?;
    if let Ok(identity) = spike.identity().current() {
        exit::set_caller(identity.spiffe_id().to_string());
    }
    Ok(spike)
}

/// Maps the SDK's "not found" to one that names what was not found (issue 18); other errors
/// pass through.
pub fn not_found(what: String) -> impl FnOnce(spike_client::Error) -> CliError {
    move |e| match e {
        spike_client::Error::NotFound => CliError::NotFound(what),
        other => other.into(),
    }
}

/// Parses a duration such as `500ms`, `30s`, `5m`, `1h` or `1m30s`.
pub fn parse_duration(flag: &str, value: &str) -> Result<Duration, CliError> {
    spike_client::config::parse_go_duration(value).ok_or_else(|| {
        CliError::Usage(format!(
            "{flag} {value:?} is not a duration; use e.g. \"500ms\", \"30s\", \"5m\" or \"1h\""
        ))
    })
}

/// Reads all of standard input (bounded) into a zeroizing buffer.
pub fn read_stdin() -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|source| CliError::Stdio { action: "read", stream: "input", source })?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(CliError::Usage(format!(
            "standard input is larger than {} MiB; that is more than Nexus accepts",
            MAX_INPUT >> 20
        )));
    }
    Ok(buf)
}

/// Reads a whole file (bounded) into a zeroizing buffer.
pub fn read_file(path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let file = std::fs::File::open(path).map_err(|e| CliError::io("open", path, e))?;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_INPUT + 1).read_to_end(&mut buf).map_err(|e| CliError::io("read", path, e))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(CliError::Usage(format!(
            "{} is larger than {} MiB; that is more than Nexus accepts",
            path.display(),
            MAX_INPUT >> 20
        )));
    }
    Ok(buf)
}

/// Asks `question` on standard error and reads a y/N answer from standard input (as SPIKE
/// does, so `echo y | spike policy delete x` works); anything but y/yes cancels.
pub fn confirm(question: &str) -> Result<(), CliError> {
    eprint!("{question} (y/N): ");
    let mut answer = String::new();
    std::io::stdin().lock().take(256).read_line(&mut answer).map_err(|source| CliError::Stdio {
        action: "read",
        stream: "input",
        source,
    })?;
    match answer.lines().next().map(str::trim) {
        Some("y" | "Y" | "yes" | "YES" | "Yes") => Ok(()),
        _ => Err(CliError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_go_style() {
        assert_eq!(parse_duration("--x", "1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("--x", "250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "5", "s", "5x", "-5s", "1.5s"] {
            let err = parse_duration("--x", bad).unwrap_err().to_string();
            assert!(err.contains("--x"), "{err}");
        }
    }
}
