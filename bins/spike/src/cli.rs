//! The command line, as clap derive types only; behaviour lives in `cmd/`.
//!
//! Flags follow SPIKE's Go CLI where it has them (`-v/--version` on `secret get`,
//! `-v/--versions` on delete/undelete, `-f/--format`, `--spiffeid-pattern`, `-f/--file` and
//! `-o/--out` for the cipher); the rest are spike-rs additions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// SPIKE Pilot: manage secrets, policies, encryption and the root key of a SPIKE Nexus, and
/// run a local system with `spike dev`.
///
/// Connection settings come from SPIKE's environment: SPIFFE_ENDPOINT_SOCKET (the Workload
/// API that hands this process its SPIFFE identity) and SPIKE_NEXUS_API_URL (Nexus). Exit
/// codes: 0 ok, 1 local error (bad input, nothing reachable), 2 Nexus said no (denied, not
/// found, conflict, not ready).
#[derive(Debug, Parser)]
#[command(name = "spike", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where to reach Nexus and how to identify to it.
    #[command(flatten)]
    pub conn: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection overrides; without them the SPIKE environment variables apply.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Nexus URL [default: $SPIKE_NEXUS_API_URL, then $SPIKE_NEXUS_URL, then
    /// https://localhost:8553].
    #[arg(long, global = true, value_name = "URL")]
    pub nexus_url: Option<String>,
    /// SPIFFE Workload API endpoint, e.g. unix:///tmp/agent.sock [default:
    /// $SPIFFE_ENDPOINT_SOCKET].
    #[arg(long, global = true, value_name = "ENDPOINT")]
    pub socket: Option<String>,
    /// Time limit for each request to Nexus, e.g. 30s, 2m.
    #[arg(long, global = true, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Authenticate with a JWT-SVID for this audience instead of a client certificate, on
    /// Nexus's JWT listener [URL default: $SPIKE_NEXUS_JWT_API_URL] (spike-rs extension).
    #[arg(long, global = true, value_name = "AUDIENCE", env = "SPIKE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store and read secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Decide which SPIFFE IDs may do what on which secret paths.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Encrypt and decrypt with a key only Nexus holds (encryption as a service).
    #[command(subcommand)]
    Cipher(CipherCmd),
    /// Root key tasks: export recovery shards, restore from them, rotate data keys.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Run a complete local system (agent, Keepers, Bootstrap, Nexus); no SPIRE, no config.
    Dev(DevArgs),
    /// Run a command with secrets as environment variables.
    Exec(ExecArgs),
    /// Print a shell completion script, e.g. `spike completions bash > /etc/bash_completion.d/spike`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text (SPIKE calls it "human" or "plain").
    #[value(alias = "human", alias = "h", alias = "plain", alias = "p")]
    Table,
    /// JSON, with stable field names.
    #[value(alias = "j")]
    Json,
    /// YAML, the same structure as the JSON.
    #[value(alias = "y")]
    Yaml,
}

/// The `-f/--format` flag.
#[derive(Debug, Clone, Copy, Args)]
pub struct FormatArg {
    /// Output format: table, json or yaml (SPIKE's human/plain/h/p, j, y also work).
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `spike secret ...`
#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Write a new version: `spike secret put PATH k=v...`. `k=-` reads that value from
    /// standard input; a lone `-` reads `k=v` lines or a JSON object from standard input.
    Put {
        /// Secret path, e.g. tenants/app/db.
        path: String,
        /// KEY=VALUE pairs, `KEY=-` (value from stdin), or `-` (all pairs from stdin).
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Write only if the current version is N (0: only if the secret does not exist).
        #[arg(long, value_name = "N")]
        cas: Option<u64>,
    },
    /// Print a secret's values (or one value with KEY / --field).
    Get {
        /// Secret path.
        path: String,
        /// Print only this key's value (same as --field).
        key: Option<String>,
        /// Version to read [default: the current one].
        #[arg(short = 'v', long, value_name = "N")]
        version: Option<u64>,
        /// Print only this key's value.
        #[arg(long, value_name = "KEY")]
        field: Option<String>,
        /// Output format.
        #[command(flatten)]
        format: FormatArg,
    },
    /// List the secret paths this identity may see.
    List {
        /// Only paths starting with this prefix.
        prefix: Option<String>,
        /// Output format.
        #[command(flatten)]
        format: FormatArg,
    },
    /// Soft-delete versions (default: the current one); `undelete` brings them back.
    Delete {
        /// Secret path.
        path: String,
        /// Comma-separated versions, e.g. 1,2 (0 or none: the current one).
        #[arg(short = 'v', long, value_name = "N,...", value_delimiter = ',')]
        versions: Vec<u64>,
    },
    /// Restore soft-deleted versions (default: the latest deleted one).
    Undelete {
        /// Secret path.
        path: String,
        /// Comma-separated versions, e.g. 1,2.
        #[arg(short = 'v', long, value_name = "N,...", value_delimiter = ',')]
        versions: Vec<u64>,
    },
    /// Permanently erase versions (default: the current one). Cannot be undone.
    Destroy {
        /// Secret path.
        path: String,
        /// Comma-separated versions, e.g. 1,2.
        #[arg(short = 'v', long, value_name = "N,...", value_delimiter = ',')]
        versions: Vec<u64>,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Print a secret's versions and timestamps (`metadata PATH`, or SPIKE's
    /// `metadata get PATH`).
    Metadata {
        /// Secret path (optionally preceded by `get`).
        #[arg(num_args = 1..=2, required = true, value_name = "PATH")]
        args: Vec<String>,
        /// Version to ask about (SPIKE's flag; Nexus answers with the whole secret's metadata).
        #[arg(short = 'v', long, value_name = "N")]
        version: Option<u64>,
        /// Output format.
        #[command(flatten)]
        format: FormatArg,
    },
}

/// The policy fields given as flags.
#[derive(Debug, Clone, Args)]
pub struct PolicyFlags {
    /// Policy name (letters, digits, '-', '_', spaces).
    #[arg(long)]
    pub name: Option<String>,
    /// Regular expression the caller's whole SPIFFE ID must match, e.g.
    /// '^spiffe://spike\.ist/demo$'.
    #[arg(long, alias = "spiffeid-pattern", value_name = "REGEX")]
    pub spiffe_id_pattern: Option<String>,
    /// Regular expression the whole secret path must match, e.g. '^tenants/demo/.*$'.
    #[arg(long, value_name = "REGEX")]
    pub path_pattern: Option<String>,
    /// Comma-separated permissions: read, write, list, execute, super.
    #[arg(long, value_name = "P,...")]
    pub permissions: Option<String>,
}

/// `spike policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Create a policy; fails if one with that name exists (use `apply` to replace).
    Create {
        /// The policy.
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Create or replace a policy from a YAML (or JSON) file, or from flags.
    ///
    /// The file holds: name, spiffeidPattern, pathPattern, permissions (a list).
    Apply {
        /// Policy file; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The policy, when no file is given.
        #[command(flatten)]
        policy: PolicyFlags,
    },
    /// Print one policy.
    Get {
        /// Policy name.
        name: Option<String>,
        /// Policy name (alternative to the argument).
        #[arg(long = "name", value_name = "NAME")]
        name_flag: Option<String>,
        /// Output format.
        #[command(flatten)]
        format: FormatArg,
    },
    /// List policies, optionally only those with exactly this SPIFFE ID or path pattern.
    List {
        /// Only policies with this SPIFFE ID pattern.
        #[arg(
            long,
            alias = "spiffeid-pattern",
            value_name = "REGEX",
            conflicts_with = "path_pattern"
        )]
        spiffe_id_pattern: Option<String>,
        /// Only policies with this path pattern.
        #[arg(long, value_name = "REGEX")]
        path_pattern: Option<String>,
        /// Output format.
        #[command(flatten)]
        format: FormatArg,
    },
    /// Delete a policy (asks first unless --yes).
    Delete {
        /// Policy name.
        name: Option<String>,
        /// Policy name (alternative to the argument).
        #[arg(long = "name", value_name = "NAME")]
        name_flag: Option<String>,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
}

/// `spike cipher ...`
#[derive(Debug, Subcommand)]
pub enum CipherCmd {
    /// Encrypt a file or standard input; writes SPIKE's binary ciphertext (or, with
    /// --plaintext, a JSON object with version, nonce and ciphertext).
    Encrypt {
        /// Input file [default: standard input].
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Output file [default: standard output].
        #[arg(short = 'o', long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Base64 plaintext: use the JSON API instead of streaming.
        #[arg(long, value_name = "BASE64")]
        plaintext: Option<String>,
        /// Accepted for SPIKE's CLI compatibility (its algorithm hint); ignored, as SPIKE's
        /// Nexus ignores it.
        #[arg(long, value_name = "NAME")]
        algorithm: Option<String>,
    },
    /// Decrypt SPIKE's binary ciphertext from a file or standard input (or, with --version,
    /// --nonce and --ciphertext, the JSON form).
    Decrypt {
        /// Input file [default: standard input].
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Output file [default: standard output].
        #[arg(short = 'o', long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Format version byte (JSON mode).
        #[arg(long, value_name = "N")]
        version: Option<u8>,
        /// Base64 nonce (JSON mode).
        #[arg(long, value_name = "BASE64")]
        nonce: Option<String>,
        /// Base64 ciphertext (JSON mode).
        #[arg(long, value_name = "BASE64")]
        ciphertext: Option<String>,
        /// Accepted for SPIKE's CLI compatibility (its algorithm hint); ignored, as SPIKE's
        /// Nexus ignores it.
        #[arg(long, value_name = "NAME")]
        algorithm: Option<String>,
    },
}

/// `spike operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// Save the root key's recovery shards to files (recover role; do it while Nexus is
    /// healthy, then move the files offline).
    Recover {
        /// Directory for the shard files [default: $SPIKE_PILOT_RECOVERY_DIR/recover, as
        /// SPIKE's Pilot, else ~/.spike/recover].
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Feed recovery shards to a Nexus that cannot recover from its Keepers (restore role).
    /// Reads one shard (`spike:ID:HEX`) from standard input, hidden on a terminal.
    Restore {
        /// Read shards from these files instead (repeatable).
        #[arg(long, value_name = "FILE")]
        file: Vec<PathBuf>,
    },
    /// Add a new data-key term; Nexus re-encrypts older records in the background (superuser).
    /// With `--root-key`: replace the root key, re-split it and send the new shards to every
    /// Keeper (recovery shards exported earlier stop working).
    Rotate {
        /// Rotate the root key instead of the data keys.
        #[arg(long)]
        root_key: bool,
    },
    /// Import a SPIKE (Go) Nexus's SQLite store (superuser): every secret with its whole
    /// history, every policy, and SPIKE's root key as the legacy cipher key, so ciphertexts
    /// SPIKE made still decrypt. Reads the file read-only; checks everything before writing.
    #[command(name = "import-spike")]
    ImportSpike {
        /// SPIKE Nexus's database (`spike.db`; a `spike.db-wal` beside it is read too).
        #[arg(long, value_name = "PATH")]
        db: PathBuf,
        /// Directory with SPIKE's recovery shards (`spike.recovery.<id>.txt` from SPIKE's
        /// `spike operator recover`); at least SPIKE's threshold of them.
        #[arg(long, value_name = "DIR")]
        shards: PathBuf,
        /// Print what would be imported (paths, version counts, policies; never values) and
        /// write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replace secrets, policies and a legacy cipher key that exist with other content.
        #[arg(long)]
        force: bool,
    },
    /// Show whether a legacy (SPIKE) cipher key is stored and how often it is used; with
    /// `--retire`, remove it once callers have re-encrypted (superuser).
    #[command(name = "legacy-cipher-key")]
    LegacyCipherKey {
        /// Remove the key: SPIKE-made ciphertexts stop opening.
        #[arg(long)]
        retire: bool,
    },
}

/// `spike dev`
#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Directory for everything: agent sockets, CA, data, saved recovery shards, `env` file.
    #[arg(long, default_value = ".spike-dev", value_name = "DIR")]
    pub dir: PathBuf,
    /// Nexus's store: sled (persistent; root key held by 3 Keepers) or memory.
    #[arg(long, value_enum, default_value_t = DevBackend::Sled)]
    pub backend: DevBackend,
    /// Register another workload identity: NAME=SPIFFE_ID; its socket is DIR/agent/NAME.sock
    /// (repeatable).
    #[arg(long = "workload", value_name = "NAME=SPIFFE_ID")]
    pub workloads: Vec<String>,
    /// Nexus's port on 127.0.0.1 (0: pick a free one).
    #[arg(long, default_value_t = 8553)]
    pub port: u16,
    /// Trust domain of every identity.
    #[arg(long, env = "SPIKE_TRUST_ROOT", default_value = "spike.ist", value_name = "TD")]
    pub trust_domain: String,
    /// Log level of the children: debug, info, warn or error.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// The connection flags of the other commands, taken here (hidden) so that they are not
    /// listed in `spike dev --help`: `spike dev` starts its own Nexus and agent, and refuses
    /// them with a message (issue 18).
    #[command(flatten)]
    pub not_for_dev: NotForDev,
}

/// The global connection flags, shadowed for `spike dev` (see [`DevArgs::not_for_dev`]).
#[derive(Debug, Clone, Args)]
pub struct NotForDev {
    /// `--nexus-url`, refused.
    #[arg(long, hide = true)]
    pub nexus_url: Option<String>,
    /// `--socket`, refused.
    #[arg(long, hide = true)]
    pub socket: Option<String>,
    /// `--timeout`, refused.
    #[arg(long, hide = true)]
    pub timeout: Option<String>,
    /// `--jwt-audience`, refused.
    #[arg(long, hide = true)]
    pub jwt_audience: Option<String>,
}

impl NotForDev {
    /// The first of these flags that was given, by its name.
    pub fn given(&self) -> Option<&'static str> {
        [
            (self.nexus_url.is_some(), "--nexus-url"),
            (self.socket.is_some(), "--socket"),
            (self.timeout.is_some(), "--timeout"),
            (self.jwt_audience.is_some(), "--jwt-audience"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

/// Nexus backends `spike dev` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DevBackend {
    /// Embedded sled database in DIR/data; survives restarts.
    Sled,
    /// In memory; gone when Nexus stops.
    Memory,
}

/// `spike exec`
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Secret whose keys become environment variables (repeatable).
    #[arg(long = "secret", required = true, value_name = "PATH")]
    pub secrets: Vec<String>,
    /// Prefix for every variable name, e.g. DB_.
    #[arg(long, default_value = "", value_name = "PREFIX")]
    pub prefix: String,
    /// Keep the keys' case instead of upper-casing them.
    #[arg(long)]
    pub keep_case: bool,
    /// Restart the command when a secret changes.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch re-reads the secrets, e.g. 10s.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub interval: String,
    /// How long a restarted command may take to stop after SIGTERM before SIGKILL.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub grace: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}
