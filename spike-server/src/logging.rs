//! Log setup shared by the daemons: `SPIKE_SYSTEM_LOG_LEVEL` (SPIKE's name) picks the level.
//! Logs never carry secret values; see the canary tests.

/// Installs a stderr logger at `level` (`debug`, `info`, `warn`, `error`; SPIKE's upper-case
/// spellings are accepted). An unknown level falls back to `info` with a warning.
pub fn init(level: Option<&str>) {
    let wanted = level.unwrap_or("info").to_ascii_lowercase();
    let (filter, unknown) = match wanted.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => (wanted.clone(), false),
        _ => ("info".to_owned(), true),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    if unknown {
        tracing::warn!(
            level = %wanted,
            "unknown SPIKE_SYSTEM_LOG_LEVEL; use debug, info, warn or error (using info)"
        );
    }
}
