//! `spike exec --secret PATH -- COMMAND...`: runs COMMAND with the secrets' keys as
//! environment variables (mapping: `spike_client::exec`).
//!
//! Without `--watch`, `spike` *becomes* the command (`execvp`): signals, exit code, process
//! ID and terminal behave exactly as if the command ran alone. With `--watch`, `spike` stays
//! as a supervisor: it forwards signals, re-reads the secrets every `--interval`, restarts the
//! command (SIGTERM, then SIGKILL after `--grace`) when they change, and exits with the
//! command's code when it ends on its own (128 + N if killed by signal N).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{Pid, Signal};
use spike_client::Spike;
use spike_client::exec::{EnvMapping, SecretEnv};
use tokio::signal::unix::{SignalKind, signal};

use super::{client, parse_duration};
use crate::cli::{Connection, ExecArgs};
use crate::exit::CliError;

/// Signals passed on to the command.
const FORWARDED: [(SignalKind, Signal); 6] = [
    (SignalKind::hangup(), Signal::HUP),
    (SignalKind::interrupt(), Signal::INT),
    (SignalKind::quit(), Signal::QUIT),
    (SignalKind::terminate(), Signal::TERM),
    (SignalKind::user_defined1(), Signal::USR1),
    (SignalKind::user_defined2(), Signal::USR2),
];

/// Runs `spike exec`; returns the exit code to end with.
pub async fn run(conn: &Connection, args: ExecArgs) -> Result<u8, CliError> {
    let mapping = EnvMapping::new().prefix(args.prefix.clone()).keep_case(args.keep_case);
    let interval = parse_duration("--interval", &args.interval)?;
    let grace = parse_duration("--grace", &args.grace)?;
    if interval < Duration::from_millis(100) {
        return Err(CliError::Usage("--interval must be at least 100ms".into()));
    }
    let spike = client(conn).await?;
    let env = fetch(&spike, &args.secrets, &mapping).await?;
    if !args.watch {
        return Err(exec_replace(&args.command, &env));
    }
    supervise(&spike, &args, &mapping, env, interval, grace).await
}

/// Reads every secret and maps it into one environment.
async fn fetch(
    spike: &Spike,
    paths: &[String],
    mapping: &EnvMapping,
) -> Result<SecretEnv, CliError> {
    let mut values = Vec::with_capacity(paths.len());
    for path in paths {
        values.push(spike.get_secret(path).await?);
    }
    let pairs: Vec<(&str, &_)> = paths.iter().map(String::as_str).zip(values.iter()).collect();
    Ok(mapping.map(&pairs)?)
}

fn command(argv: &[String], env: &SecretEnv) -> std::process::Command {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).envs(env.iter());
    cmd
}

/// Replaces this process with the command; returns only on failure.
fn exec_replace(argv: &[String], env: &SecretEnv) -> CliError {
    let source = command(argv, env).exec();
    CliError::Spawn { program: argv[0].clone(), source }
}

/// `--watch`: run, forward signals, restart on change.
async fn supervise(
    spike: &Spike,
    args: &ExecArgs,
    mapping: &EnvMapping,
    mut env: SecretEnv,
    interval: Duration,
    grace: Duration,
) -> Result<u8, CliError> {
    let mut signals = Vec::new();
    for (kind, sig) in FORWARDED {
        let stream = signal(kind)
            .map_err(|source| CliError::Spawn { program: "a signal handler".into(), source })?;
        signals.push((stream, sig));
    }
    loop {
        let mut child = tokio::process::Command::from(command(&args.command, &env))
            .spawn()
            .map_err(|source| CliError::Spawn { program: args.command[0].clone(), source })?;
        let pid = child.id().and_then(|id| Pid::from_raw(id as i32));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let next_env = loop {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_err(|source| CliError::Spawn {
                        program: args.command[0].clone(),
                        source,
                    })?;
                    return Ok(exit_code(status));
                }
                sig = next_signal(&mut signals) => {
                    if let Some(pid) = pid && should_forward(sig) {
                        let _ = rustix::process::kill_process(pid, sig);
                    }
                }
                _ = ticks.tick() => match fetch(spike, &args.secrets, mapping).await {
                    Ok(fresh) if !same_env(&fresh, &env) => break fresh,
                    Ok(_) => {}
                    Err(e) => eprintln!(
                        "spike exec: could not re-read the secrets ({e}); the command keeps \
                         running with the values it has"
                    ),
                },
            }
        };
        eprintln!("spike exec: a secret changed; restarting {}", args.command[0]);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, Signal::TERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            eprintln!("spike exec: {} did not stop within {grace:?}; killing it", args.command[0]);
            let _ = child.kill().await;
        }
        env = next_env;
    }
}

/// Waits for any forwarded signal.
async fn next_signal(signals: &mut [(tokio::signal::unix::Signal, Signal)]) -> Signal {
    let futures = signals.iter_mut().map(|(stream, sig)| {
        let sig = *sig;
        Box::pin(async move {
            stream.recv().await;
            sig
        })
    });
    futures::future::select_all(futures).await.0
}

/// Whether to pass `sig` on. A terminal sends Ctrl-C (SIGINT) and Ctrl-\ (SIGQUIT) to its
/// whole foreground process group, the command included; forwarding those again would
/// deliver them twice (and many programs treat a second SIGINT as "stop now").
fn should_forward(sig: Signal) -> bool {
    if sig != Signal::INT && sig != Signal::QUIT {
        return true;
    }
    let stdin = std::io::stdin();
    match rustix::termios::tcgetpgrp(&stdin) {
        Ok(foreground) => foreground != rustix::process::getpgrp(),
        Err(_) => true,
    }
}

fn same_env(a: &SecretEnv, b: &SecretEnv) -> bool {
    a.len() == b.len() && a.iter().eq(b.iter())
}

/// A shell-style exit code: the command's own, or 128 + N when signal N ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}
