//! The `tachi-gate` binary: parse the command line, load the configuration,
//! then serve, or carry out one operator command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pingora::server::RunArgs;
use serde_json::{json, Map, Value};
use tachi_gate::config::{Config, Overrides};
use tachi_gate::ops::admin::{AdminOp, KeyOwner};
use tachi_gate::ops::cli;
use tachi_gate::server::Gate;

/// mimalloc rather than glibc's malloc: a proxied request makes over a hundred
/// small allocations (most of them Pingora's), and glibc's allocator took a
/// large share of the gate's CPU under load (measured in benches/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An auth gateway for Tachi servers.
#[derive(Debug, Parser)]
#[command(name = "tachi-gate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (default: conf/tachi-gate.toml if present, else built-in defaults).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Forward to this upstream (or comma-separated upstreams) instead of the configured ones.
    #[arg(long, global = true, value_name = "ADDR")]
    upstream: Option<String>,
    /// Keep the store in this directory.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Act through a running gate's admin API at this URL (token from
    /// TACHI_GATE_ADMIN_TOKEN) instead of opening the store.
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gate (the default).
    Serve {
        /// Take over from a running gate (graceful upgrade): start this, then
        /// send SIGQUIT to the running one.
        #[arg(long, short)]
        upgrade: bool,
    },
    /// Manage API clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Move clients and keys between stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Import Tachi's api-clients and api-tokens collections (mongoexport files).
    Import {
        /// The api-clients export.
        #[arg(long, value_name = "FILE")]
        clients: Option<PathBuf>,
        /// The api-tokens export.
        #[arg(long, value_name = "FILE")]
        tokens: Option<PathBuf>,
    },
    /// Manage the keys that sign identity assertions (`identity.mode = "jwt"`).
    #[command(subcommand)]
    Identity(IdentityCommand),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Sign with a new key from now on; the old one stays in the JWKS until
    /// its assertions have expired. Without --admin this rewrites the key
    /// file, which running gates read again within a second.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy every client and key from one store to another, adding only
    /// what the other lacks (run it again at no harm); prints the counts.
    Copy {
        /// A sled store's directory, a postgres:// URL or key-value
        /// connection string, or env:NAME to read either from the variable
        /// NAME (env: alone: TACHI_GATE_STORE_URL).
        #[arg(long, value_name = "PATH_OR_URL")]
        from: String,
        /// As --from.
        #[arg(long, value_name = "PATH_OR_URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// List clients, all or one user's.
    List {
        #[arg(long, value_name = "USER_ID")]
        author: Option<u64>,
    },
    /// Create a client; its secret is printed once.
    Create(NewClient),
    /// Delete a client and every key issued through it.
    Delete { client_id: String },
}

#[derive(Debug, Args)]
struct NewClient {
    #[arg(long)]
    name: String,
    /// The user who owns the client.
    #[arg(long, value_name = "USER_ID")]
    author: u64,
    /// Comma-separated permission names.
    #[arg(long, value_delimiter = ',', required = true)]
    permissions: Vec<String>,
    #[arg(long, value_name = "URL")]
    redirect_uri: Option<String>,
    #[arg(long, value_name = "URL")]
    webhook_uri: Option<String>,
    #[arg(long)]
    api_key_template: Option<String>,
    #[arg(long)]
    api_key_filename: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List a user's keys or a client's keys (never the keys themselves).
    List {
        #[arg(
            long,
            value_name = "USER_ID",
            conflicts_with = "client",
            required_unless_present = "client"
        )]
        user: Option<u64>,
        #[arg(long, value_name = "CLIENT_ID")]
        client: Option<String>,
    },
    /// Create a key for a user; it is printed once.
    Create {
        #[arg(long, value_name = "USER_ID")]
        user: u64,
        /// Give the key this client's permissions (one key per client and user).
        #[arg(long, value_name = "CLIENT_ID", conflicts_with_all = ["permissions", "identifier"])]
        client: Option<String>,
        /// Comma-separated permission names.
        #[arg(long, value_delimiter = ',', requires = "identifier")]
        permissions: Vec<String>,
        /// A name for the key.
        #[arg(long)]
        identifier: Option<String>,
    },
    /// Revoke one key (by token ID or value), or every key of a user.
    Revoke {
        #[arg(value_name = "TOKEN_ID_OR_KEY", required_unless_present = "user")]
        token: Option<String>,
        #[arg(long, value_name = "USER_ID", conflicts_with = "token")]
        user: Option<u64>,
    },
}

fn client_fields(c: NewClient) -> (u64, Map<String, Value>) {
    let mut m = Map::new();
    m.insert("name".into(), json!(c.name));
    m.insert("permissions".into(), json!(c.permissions));
    m.insert("redirectUri".into(), json!(c.redirect_uri));
    m.insert("webhookUri".into(), json!(c.webhook_uri));
    m.insert("apiKeyTemplate".into(), json!(c.api_key_template));
    m.insert("apiKeyFilename".into(), json!(c.api_key_filename));
    (c.author, m)
}

/// The admin operation a command asks for.
fn operation(command: Command, config: &Config) -> Result<AdminOp, String> {
    Ok(match command {
        Command::Serve { .. } | Command::Store(_) => {
            return Err("not an admin API operation".into())
        }
        Command::Clients(ClientsCommand::List { author }) => AdminOp::ListClients { author },
        Command::Clients(ClientsCommand::Create(c)) => {
            let (author, fields) = client_fields(c);
            AdminOp::CreateClient { author, fields }
        }
        Command::Clients(ClientsCommand::Delete { client_id }) => AdminOp::DeleteClient(client_id),
        Command::Keys(KeysCommand::List { user, client }) => match (user, client) {
            (Some(u), _) => AdminOp::ListKeys(KeyOwner::User(u)),
            (None, Some(c)) => AdminOp::ListKeys(KeyOwner::Client(c)),
            (None, None) => return Err("keys list needs --user or --client".into()),
        },
        Command::Keys(KeysCommand::Create {
            user,
            client,
            permissions,
            identifier,
        }) => {
            let mut request = Map::new();
            match client {
                Some(c) => {
                    request.insert("clientID".into(), json!(c));
                }
                None => {
                    request.insert("permissions".into(), json!(permissions));
                    request.insert("identifier".into(), json!(identifier.unwrap_or_default()));
                }
            }
            AdminOp::CreateKey { user, request }
        }
        Command::Keys(KeysCommand::Revoke { token, user }) => match (token, user) {
            (_, Some(u)) => AdminOp::RevokeUser(u),
            (Some(t), None) => AdminOp::RevokeKey(t),
            (None, None) => return Err("keys revoke needs a key or --user".into()),
        },
        Command::Identity(IdentityCommand::Rotate) => AdminOp::RotateIdentityKey,
        Command::Import { clients, tokens } => cli::import_op(
            clients.as_deref(),
            tokens.as_deref(),
            &config.oauth.permissions,
        )?,
    })
}

/// The libraries whose debug and trace lines can carry secrets: Pingora's
/// dumps of requests and answers (a session's `Cookie`, upstream bodies),
/// and the HTTP/2 and HTTP client stacks.
const LIBRARIES_THAT_LOG_SECRETS: [&str; 5] = ["pingora", "h2", "hyper", "reqwest", "rustls"];

/// The configured logger, less those libraries' debug and trace lines
/// whatever `RUST_LOG` says, unless `log.unsafe_debug = true`. A filter on
/// the target's crate, so no module path inside them slips through.
struct SafeLogger {
    inner: env_logger::Logger,
    unsafe_debug: bool,
}

impl SafeLogger {
    fn may_hold_secrets(metadata: &log::Metadata<'_>) -> bool {
        metadata.level() > log::Level::Info
            && LIBRARIES_THAT_LOG_SECRETS
                .iter()
                .any(|name| metadata.target().starts_with(name))
    }
}

impl log::Log for SafeLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        (self.unsafe_debug || !SafeLogger::may_hold_secrets(metadata))
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides = Overrides {
        listen: cli.listen,
        upstream: cli.upstream,
        data: cli.data,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            return ExitCode::from(2);
        }
    };
    // The gate logs its work at the configured level (RUST_LOG wins); an
    // operator command prints only its answer and warnings.
    let default_filter = match cli.command {
        None | Some(Command::Serve { .. }) => {
            format!("{},pingora_core=warn,pingora_proxy=warn", config.log_level)
        }
        Some(_) => "warn".to_string(),
    };
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
            .build();
    log::set_max_level(logger.filter());
    let _ = log::set_boxed_logger(Box::new(SafeLogger {
        inner: logger,
        unsafe_debug: config.log_unsafe_debug,
    }));
    match cli.command {
        None => serve(config, false),
        Some(Command::Serve { upgrade }) => serve(config, upgrade),
        Some(command) => {
            let outcome = match command {
                Command::Store(StoreCommand::Copy { from, to }) => {
                    let var = |name: &str| std::env::var(name).ok();
                    cli::StoreLocation::parse(&from, var).and_then(|from| {
                        cli::copy_store(&from, &cli::StoreLocation::parse(&to, var)?)
                    })
                }
                command => operation(command, &config).and_then(|op| match &cli.admin {
                    Some(url) => {
                        cli::run_remote(url, std::env::var("TACHI_GATE_ADMIN_TOKEN").ok(), op)
                    }
                    None => cli::run_direct(config, op),
                }),
            };
            match outcome {
                Ok((description, body)) => {
                    eprintln!("{description}");
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&body).unwrap_or_default()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tachi-gate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(config: Config, upgrade: bool) -> ExitCode {
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    let gate = match Gate::build_with(config, upgrade) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("tachi-gate listening on {}", listen.join(", "));
    match gate.run(RunArgs::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            ExitCode::FAILURE
        }
    }
}
