//! The configuration file's format, as serde reads it: every key optional,
//! unknown keys refused. What the values mean and which are usable is
//! decided in `validate`; docs/configuration.md describes every key.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileConfig {
    pub(super) server: FileServer,
    pub(super) upstream: FileUpstream,
    pub(super) store: FileStore,
    pub(super) session: FileSession,
    pub(super) oauth: FileOAuth,
    /// `[auth]`; `[gate]` is its former name, still read (one or the other).
    pub(super) auth: Option<FileAuth>,
    pub(super) gate: Option<FileAuth>,
    pub(super) limits: FileLimits,
    pub(super) identity: FileIdentity,
    pub(super) log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileIdentity {
    pub(super) mode: Option<String>,
    pub(super) header: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) ttl_secs: Option<u64>,
    pub(super) key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileLimits {
    pub(super) enabled: Option<bool>,
    pub(super) window_secs: Option<u64>,
    pub(super) oauth_requests: Option<u64>,
    pub(super) failed_auths: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileLog {
    pub(super) level: Option<String>,
    pub(super) unsafe_debug: Option<bool>,
}

/// `listen = "a"` and `listen = ["a", "b"]` are both accepted.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileServer {
    pub(super) listen: Option<OneOrMany>,
    pub(super) admin_listen: Option<String>,
    pub(super) admin_token: Option<String>,
    pub(super) threads: Option<usize>,
    pub(super) public_url: Option<String>,
    pub(super) tls: Option<FileTls>,
    pub(super) upgrade_sock: Option<PathBuf>,
    pub(super) header_timeout_ms: Option<u64>,
    pub(super) body_timeout_ms: Option<u64>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) proxy_protocol: Option<bool>,
    pub(super) trusted_origins: Option<Vec<String>>,
    pub(super) h2_max_streams: Option<u32>,
    pub(super) cors_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileTls {
    pub(super) listen: Option<OneOrMany>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileUpstream {
    pub(super) addrs: Option<OneOrMany>,
    pub(super) tls: Option<bool>,
    pub(super) sni: Option<String>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) read_timeout_ms: Option<u64>,
    pub(super) health_check_secs: Option<u64>,
    pub(super) ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileStore {
    pub(super) backend: Option<String>,
    pub(super) path: Option<PathBuf>,
    pub(super) url: Option<String>,
    pub(super) pool_size: Option<usize>,
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileSession {
    pub(super) status_path: Option<String>,
    pub(super) cache_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileOAuth {
    pub(super) code_ttl_secs: Option<u64>,
    pub(super) client_cap: Option<usize>,
    pub(super) permissions: Option<Vec<String>>,
    pub(super) require_client_binding: Option<bool>,
    pub(super) codes_per_user: Option<usize>,
    pub(super) keys_per_user: Option<usize>,
    pub(super) login_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct FileAuth {
    pub(super) hide_credentials: Option<bool>,
    pub(super) unknown_tokens: Option<String>,
    pub(super) policy: Vec<FilePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilePolicy {
    pub(super) methods: Option<Vec<String>>,
    pub(super) path_prefix: Option<String>,
    #[serde(default)]
    pub(super) require: Vec<String>,
}

/// Turns toml's multi-line report into one line with the position.
pub(super) fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', " ");
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    ConfigError::Syntax { message, line }
}
