//! The operator commands of the binary (`clients`, `keys`, `import`): each
//! becomes one [`AdminOp`], carried out on the store directly when no gate
//! holds it, or through a running gate's admin API with `--admin URL`.
//! `store copy` moves clients and keys from one store to another.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::app::App;
use crate::config::{Config, IdentityMode, PostgresConfig, StoreBackend};
use crate::http::reply::Reply;
use crate::ops::admin::{self, AdminOp, ImportBatch, ImportedKey};
use crate::ops::import;
use crate::store::{ImportCounts, OpenError, PgStore, SledStore, Store};

/// Reads Tachi exports into an import operation; an error names the file and line.
pub fn import_op(
    clients: Option<&Path>,
    tokens: Option<&Path>,
    known: &[String],
) -> Result<AdminOp, String> {
    if clients.is_none() && tokens.is_none() {
        return Err("import needs --clients FILE, --tokens FILE or both".into());
    }
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let mut batch = ImportBatch::default();
    if let Some(p) = clients {
        batch.clients = import::clients(&read(p)?, known)
            .map_err(|e| format!("{} {e}; nothing was imported", p.display()))?;
    }
    if let Some(p) = tokens {
        batch.keys = import::keys(&read(p)?, known)
            .map_err(|e| format!("{} {e}; nothing was imported", p.display()))?
            .into_iter()
            .map(|(digest, record)| ImportedKey {
                digest: hex::encode(digest),
                record,
            })
            .collect();
    }
    Ok(AdminOp::Import(batch))
}

/// What an operation answered: its description and body, or why it failed.
pub type Outcome = Result<(String, Value), String>;

fn outcome_of(envelope: &serde_json::Map<String, Value>) -> Outcome {
    let description = envelope
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if envelope.get("success") == Some(&Value::Bool(true)) {
        Ok((
            description,
            envelope.get("body").cloned().unwrap_or(Value::Null),
        ))
    } else {
        Err(description)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))
}

/// Opens a sled store for a command; a running gate's hold is explained.
fn open_sled(path: &Path) -> Result<Arc<dyn Store>, String> {
    match SledStore::open(path) {
        Ok(store) => Ok(Arc::new(store)),
        Err(OpenError::Locked { .. }) => Err(format!(
            "the store at {} is in use by a running gate; act through it with --admin URL \
             (its admin listener) and TACHI_GATE_ADMIN_TOKEN",
            path.display()
        )),
        Err(other) => Err(other.to_string()),
    }
}

fn open_postgres(config: &PostgresConfig) -> Result<Arc<dyn Store>, String> {
    Ok(Arc::new(PgStore::open(config).map_err(|e| e.to_string())?))
}

/// Runs `op` on the configured store directly: a sled store no gate may
/// hold, or the database, which running gates may share. A key rotation
/// works on the key file alone, running gates or not.
pub fn run_direct(config: Config, op: AdminOp) -> Outcome {
    if op == AdminOp::RotateIdentityKey {
        return rotate_key_file(&config);
    }
    let store = match &config.store_backend {
        StoreBackend::Sled => open_sled(&config.store_path)?,
        StoreBackend::Postgres(pg) => open_postgres(pg)?,
    };
    let app = App::new(Arc::new(config), store.clone())?;
    let reply: Reply = runtime()?.block_on(admin::run(&app, op));
    store.close().map_err(|e| e.to_string())?;
    outcome_of(&reply.envelope)
}

/// Rotates the identity signing keys in the key file. Gates that read the
/// file pick the new key up within a second, so this needs neither a
/// stopped gate nor the admin API.
fn rotate_key_file(config: &Config) -> Outcome {
    if config.identity.mode != IdentityMode::Jwt {
        return Err(
            "identity.mode is \"headers\": the gate signs nothing, so there is no key to rotate"
                .into(),
        );
    }
    let (kid, published) = crate::assertion::rotate_file(&config.identity)?;
    log::info!(target: "audit", "identity signing key rotated kid={kid} via=key file");
    outcome_of(&admin::rotated(&kid, published).envelope)
}

/// Where `store copy` reads or writes: a PostgreSQL URL or key-value
/// connection string, or else a sled store's directory.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sled(std::path::PathBuf),
    Postgres(String),
}

/// A database URL may hold a password: it is never printed.
impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sled(path) => f.debug_tuple("Sled").field(path).finish(),
            StoreLocation::Postgres(_) => f.write_str("Postgres(<hidden>)"),
        }
    }
}

/// The variable `env:` alone names, as the gate reads its own URL from.
const STORE_URL_VARIABLE: &str = crate::config::STORE_URL_ENV;

impl StoreLocation {
    /// Reads `--from`/`--to`. `env:NAME` takes the location from the
    /// variable NAME (`env:` alone: `TACHI_GATE_STORE_URL`), so that a
    /// password need not appear in the process list. A PostgreSQL location
    /// is a `postgres://` or `postgresql://` URL, or libpq's key-value form,
    /// whose first word is `keyword=` (`host=db user=gate`); anything else
    /// is a sled directory (write a directory whose name has `=` in its
    /// first word as `./name`). `var` looks a variable up.
    pub fn parse(
        text: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<StoreLocation, String> {
        let text = match text.strip_prefix("env:") {
            Some(name) => {
                let name = if name.is_empty() {
                    STORE_URL_VARIABLE
                } else {
                    name
                };
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| format!("the environment variable {name} is not set"))?
            }
            None => text.to_string(),
        };
        if text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || is_key_value(&text)
        {
            Ok(StoreLocation::Postgres(text))
        } else {
            Ok(StoreLocation::Sled(text.into()))
        }
    }

    fn open(&self) -> Result<Arc<dyn Store>, String> {
        match self {
            StoreLocation::Sled(path) => open_sled(path),
            StoreLocation::Postgres(url) => {
                crate::config::postgres_url::check_url(url)?;
                open_postgres(&PostgresConfig {
                    url: url.clone(),
                    pool_size: 2,
                    timeout: std::time::Duration::from_secs(30),
                })
            }
        }
    }
}

/// Whether `text` is libpq's key-value connection string: its first word
/// is `keyword=…` with a keyword of letters and underscores.
fn is_key_value(text: &str) -> bool {
    let first = text.split_whitespace().next().unwrap_or("");
    match first.split_once('=') {
        Some((keyword, _)) => {
            !keyword.is_empty() && keyword.chars().all(|c| c.is_ascii_alphabetic() || c == '_')
        }
        None => false,
    }
}

/// Records per transaction of a copy.
const COPY_CHUNK: usize = 500;

/// Copies every client and live key from `from` into `to`, adding only what
/// `to` lacks, so a copy can be run again (after a failure, or to catch up)
/// without harm. Codes are not copied: they live minutes, and a user whose
/// code is lost authorises again. A sled store must not be held by a gate.
pub fn copy_store(from: &StoreLocation, to: &StoreLocation) -> Outcome {
    if from == to {
        return Err("--from and --to name the same store".into());
    }
    let source = from.open()?;
    let target = to.open()?;
    let copied = runtime()?.block_on(async {
        let clients = source.all_clients().await.map_err(|e| e.to_string())?;
        let keys = source.all_keys().await.map_err(|e| e.to_string())?;
        let mut counts = ImportCounts::default();
        for chunk in clients.chunks(COPY_CHUNK) {
            counts += target.import(chunk, &[]).await.map_err(|e| e.to_string())?;
        }
        for chunk in keys.chunks(COPY_CHUNK) {
            counts += target.import(&[], chunk).await.map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(counts)
    });
    let closed = source.close().and(target.close());
    let counts = copied?;
    closed.map_err(|e| e.to_string())?;
    Ok((
        format!(
            "Copied {} clients ({} already present) and {} keys ({} already present{}).",
            counts.clients_added,
            counts.clients_present,
            counts.keys_added,
            counts.keys_present,
            counts.skipped_note()
        ),
        serde_json::to_value(counts).unwrap_or_default(),
    ))
}

/// Records per import request, so each stays well under the admin API's
/// 64 KiB body limit (a key record is about 300 bytes, a client about 500).
const IMPORT_CHUNK: usize = 100;

/// Runs `op` through a gate's admin API at `base` (e.g. `http://127.0.0.1:9180`).
/// An import goes in chunks; importing is idempotent, so a chunk that fails
/// can simply be sent again by running the command again.
pub fn run_remote(base: &str, token: Option<String>, op: AdminOp) -> Outcome {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err("--admin needs the admin token in TACHI_GATE_ADMIN_TOKEN".into());
    };
    let AdminOp::Import(batch) = op else {
        return send(base, &token, &op);
    };
    let mut chunks: Vec<ImportBatch> = batch
        .clients
        .chunks(IMPORT_CHUNK)
        .map(|c| ImportBatch {
            clients: c.to_vec(),
            keys: Vec::new(),
        })
        .collect();
    chunks.extend(batch.keys.chunks(IMPORT_CHUNK).map(|k| ImportBatch {
        clients: Vec::new(),
        keys: k.to_vec(),
    }));
    let mut totals = ImportCounts::default();
    for chunk in chunks {
        let (_, body) = send(base, &token, &AdminOp::Import(chunk))?;
        totals += serde_json::from_value::<ImportCounts>(body)
            .map_err(|e| format!("the admin API answered an import without its counts: {e}"))?;
    }
    Ok((
        totals.summary(),
        serde_json::to_value(totals).unwrap_or_default(),
    ))
}

fn send(base: &str, token: &str, op: &AdminOp) -> Outcome {
    let (method, path, body) = op.to_http();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = http.request(method, &url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
        let status = resp.status();
        let envelope: serde_json::Map<String, Value> = resp
            .json()
            .await
            .map_err(|e| format!("the admin API answered {status} without JSON: {e}"))?;
        outcome_of(&envelope)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreLocation, String> {
        StoreLocation::parse(text, |name| match name {
            "TACHI_GATE_STORE_URL" => Some("host=db user=gate password=hunter2".into()),
            "OLD_DB" => Some("postgres://gate:pw@old/tachi".into()),
            "EMPTY" => Some(" ".into()),
            _ => None,
        })
    }

    #[test]
    fn store_locations_are_urls_key_value_strings_variables_or_directories() {
        let pg = |s: &str| Ok(StoreLocation::Postgres(s.into()));
        let sled = |s: &str| Ok(StoreLocation::Sled(s.into()));
        assert_eq!(parse("postgres://db/x"), pg("postgres://db/x"));
        assert_eq!(parse("postgresql://db/x"), pg("postgresql://db/x"));
        assert_eq!(parse("host=db dbname=x"), pg("host=db dbname=x"));
        assert_eq!(
            parse("host=/var/run/postgresql"),
            pg("host=/var/run/postgresql")
        );
        assert_eq!(parse("env:"), pg("host=db user=gate password=hunter2"));
        assert_eq!(parse("env:OLD_DB"), pg("postgres://gate:pw@old/tachi"));
        assert_eq!(parse("/var/lib/tachi-gate"), sled("/var/lib/tachi-gate"));
        assert_eq!(parse("./a=b"), sled("./a=b"));
        assert_eq!(parse("data"), sled("data"));
        for unset in ["env:NOPE", "env:EMPTY"] {
            let e = parse(unset).unwrap_err();
            assert!(e.contains("is not set"), "{e}");
        }
    }
}
