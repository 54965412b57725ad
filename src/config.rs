//! Configuration: the TOML file format of SPEC §2, kept apart from the validated
//! [`Config`] the rest of the gate works with.
//!
//! Every key is optional; unknown keys are an error that names the key and its
//! line, so a typo never silently falls back to a default.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The permissions Tachi knows, in Tachi's order. The default for `oauth.permissions`.
pub const DEFAULT_PERMISSIONS: [&str; 8] = [
    "customise_profile",
    "customise_score",
    "customise_session",
    "delete_score",
    "manage_rivals",
    "manage_targets",
    "submit_score",
    "manage_challenges",
];

/// A configuration problem, worded as the one line the gate prints before exiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

// ---------------------------------------------------------------------------
// The file format.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileConfig {
    server: FileServer,
    upstream: FileUpstream,
    store: FileStore,
    session: FileSession,
    oauth: FileOAuth,
    gate: FileGate,
    limits: FileLimits,
    log: FileLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLimits {
    enabled: Option<bool>,
    window_secs: Option<u64>,
    oauth_requests: Option<u64>,
    failed_auths: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileLog {
    level: Option<String>,
}

/// `listen = "a"` and `listen = ["a", "b"]` are both accepted.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileServer {
    listen: Option<OneOrMany>,
    admin_listen: Option<String>,
    admin_token: Option<String>,
    threads: Option<usize>,
    public_url: Option<String>,
    tls: Option<FileTls>,
    upgrade_sock: Option<PathBuf>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileTls {
    listen: Option<OneOrMany>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileUpstream {
    addrs: Option<OneOrMany>,
    tls: Option<bool>,
    sni: Option<String>,
    connect_timeout_ms: Option<u64>,
    read_timeout_ms: Option<u64>,
    health_check_secs: Option<u64>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileStore {
    path: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileSession {
    status_path: Option<String>,
    cache_ttl_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileOAuth {
    code_ttl_secs: Option<u64>,
    client_cap: Option<usize>,
    permissions: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct FileGate {
    hide_credentials: Option<bool>,
    unknown_tokens: Option<String>,
    policy: Vec<FilePolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    methods: Option<Vec<String>>,
    path_prefix: Option<String>,
    #[serde(default)]
    require: Vec<String>,
}

// ---------------------------------------------------------------------------
// The validated configuration.

/// What the gate does with a Bearer key it never issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTokens {
    /// 401, the default.
    Reject,
    /// Pass the request on untouched and let the upstream judge the key.
    Forward,
}

/// One `[[gate.policy]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Upper-case method names; empty means every method.
    pub methods: Vec<String>,
    pub path_prefix: String,
    /// Sorted, de-duplicated permission names.
    pub require: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Resolved once at start-up: Pingora's peers must not do DNS per request.
    pub addrs: Vec<SocketAddr>,
    pub tls: bool,
    /// The TLS server name for upstreams; `None`: each upstream's own IP.
    pub sni: Option<String>,
    /// A PEM file of CA certificates to trust for upstream TLS, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How long connecting to an upstream may take (then 502).
    pub connect_timeout: Duration,
    /// How long an upstream may take between reads of its answer (then 504).
    pub read_timeout: Duration,
    /// How often each upstream is probed; `None` turns probing off.
    pub health_check: Option<Duration>,
}

impl UpstreamConfig {
    /// The name the upstream is known by: its TLS name, when TLS is on and
    /// `sni` names a host. An address as `sni` says nothing more than the
    /// address connected to.
    pub fn tls_name(&self) -> Option<&str> {
        self.sni
            .as_deref()
            .filter(|name| self.tls && name.parse::<std::net::IpAddr>().is_err())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub status_path: String,
    pub cache_ttl: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    pub code_ttl: Duration,
    pub client_cap: usize,
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    pub hide_credentials: bool,
    pub unknown_tokens: UnknownTokens,
    pub policies: Vec<Policy>,
}

/// The TLS listeners (`[server.tls]`), speaking HTTP/1.1 and HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Per-IP rate limits (`[limits]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    pub enabled: bool,
    /// The counting window.
    pub window_secs: u64,
    /// Requests to the token, revoke and introspect endpoints per window.
    pub oauth_requests: u64,
    /// Failed client authentications and key checks per window.
    pub failed_auths: u64,
}

/// The gate's configuration after validation: every value here is usable as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Plain HTTP listeners; may be empty when `tls` has listeners.
    pub listen: Vec<SocketAddr>,
    pub tls: Option<TlsConfig>,
    /// `None` when `admin_listen = ""`.
    pub admin_listen: Option<SocketAddr>,
    /// `None` when neither the file nor `TACHI_GATE_ADMIN_TOKEN` sets one.
    pub admin_token: Option<String>,
    pub threads: usize,
    pub public_url: Option<String>,
    /// Where a new process receives the listening sockets in a graceful upgrade
    /// (default: `upgrade.sock` in the store directory).
    pub upgrade_sock: PathBuf,
    /// How long a request's header may take to arrive, from its first byte
    /// (then 408 and the connection closes).
    pub header_timeout: Duration,
    /// How long the body of a forwarded request may take to arrive, from its
    /// first byte (then 408 and the connection closes).
    pub body_timeout: Duration,
    pub upstream: UpstreamConfig,
    pub store_path: PathBuf,
    pub session: SessionConfig,
    pub oauth: OAuthConfig,
    pub gate: GateConfig,
    pub limits: LimitsConfig,
    /// The default log filter (`RUST_LOG` wins), e.g. `info`.
    pub log_level: String,
}

/// Values given on the command line; they win over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub data: Option<PathBuf>,
}

/// The longest a code or a cached session answer may live. Codes are meant to
/// be exchanged within minutes; a bound also keeps time arithmetic far from overflow.
pub const MAX_TTL_SECS: u64 = 24 * 60 * 60;

/// Where the configuration comes from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "conf/tachi-gate.toml";

impl Config {
    /// Loads `path` if given (it must exist), else [`DEFAULT_CONFIG_PATH`] if it
    /// exists, else the built-in defaults; then applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let admin_env = std::env::var("TACHI_GATE_ADMIN_TOKEN").ok();
        let (text, name) = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (t, p.display().to_string()),
                Err(e) => return err(format!("cannot read config {}: {e}", p.display())),
            },
            None => match std::fs::read_to_string(DEFAULT_CONFIG_PATH) {
                Ok(t) => (t, DEFAULT_CONFIG_PATH.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (String::new(), "built-in defaults".to_string())
                }
                Err(e) => return err(format!("cannot read config {DEFAULT_CONFIG_PATH}: {e}")),
            },
        };
        Config::from_toml(&text, overrides, admin_env)
            .map_err(|e| ConfigError(format!("config {name}: {e}")))
    }

    /// Parses and validates one TOML document.
    pub fn from_toml(
        text: &str,
        overrides: &Overrides,
        admin_token_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        validate(file, overrides, admin_token_env, &resolve)
    }

    /// As [`Config::from_toml`] with no overrides, but accepting only numeric
    /// addresses, so that it never waits on DNS (for fuzzing and property tests).
    pub fn from_toml_offline(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        validate(file, &Overrides::default(), None, &|value: &str| {
            value.parse().map_err(|e| format!("{e}"))
        })
    }
}

/// Turns toml's multi-line report into one line with the position.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            ConfigError(format!("{message} (line {line})"))
        }
        None => ConfigError(message),
    }
}

/// Turns `host:port` into an address, resolving a host name once.
type Resolver<'a> = &'a dyn Fn(&str) -> Result<SocketAddr, String>;

fn resolve(value: &str) -> Result<SocketAddr, String> {
    match value.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| "it resolves to no address".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn socket_addr(what: &str, value: &str, resolver: Resolver<'_>) -> Result<SocketAddr, ConfigError> {
    resolver(value).map_err(|e| {
        ConfigError(format!(
            "{what}: `{value}` is not a usable host:port address ({e})"
        ))
    })
}

/// A list of addresses: the command-line override, else the file, else the default.
fn address_list(
    key: &str,
    over: Option<&String>,
    file: Option<OneOrMany>,
    default: &str,
    resolver: Resolver<'_>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let raw = match over {
        // On the command line several addresses are separated by commas.
        Some(a) => a.split(',').map(|s| s.trim().to_string()).collect(),
        None => file
            .map(OneOrMany::into_vec)
            .unwrap_or_else(|| vec![default.to_string()]),
    };
    if raw.is_empty() {
        return err(format!("{key}: at least one address is needed"));
    }
    raw.iter().map(|a| socket_addr(key, a, resolver)).collect()
}

fn validate(
    file: FileConfig,
    overrides: &Overrides,
    admin_token_env: Option<String>,
    resolver: Resolver<'_>,
) -> Result<Config, ConfigError> {
    let tls = match file.server.tls {
        None => None,
        Some(t) => {
            let listen = address_list(
                "server.tls.listen",
                None,
                t.listen,
                "127.0.0.1:8443",
                resolver,
            )?;
            let file_of = |key: &str, p: Option<PathBuf>| match p {
                Some(p) if p.is_file() => Ok(p),
                Some(p) => err(format!(
                    "server.tls.{key}: {} is not a readable file",
                    p.display()
                )),
                None => err(format!("server.tls.{key}: a PEM file path is needed")),
            };
            Some(TlsConfig {
                listen,
                cert: file_of("cert", t.cert)?,
                key: file_of("key", t.key)?,
            })
        }
    };
    // `listen = []` is allowed when TLS listeners take its place.
    let listen = match (&overrides.listen, &file.server.listen, &tls) {
        (None, Some(OneOrMany::Many(v)), Some(_)) if v.is_empty() => Vec::new(),
        _ => address_list(
            "server.listen",
            overrides.listen.as_ref(),
            file.server.listen,
            "127.0.0.1:8080",
            resolver,
        )?,
    };

    let admin_raw = file
        .server
        .admin_listen
        .unwrap_or_else(|| "127.0.0.1:9180".into());
    let admin_listen = if admin_raw.is_empty() {
        None
    } else {
        Some(socket_addr("server.admin_listen", &admin_raw, resolver)?)
    };
    let admin_token = admin_token_env
        .filter(|t| !t.is_empty())
        .or(file.server.admin_token.filter(|t| !t.is_empty()));
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        return err("server.admin_token (or TACHI_GATE_ADMIN_TOKEN): use at least 16 characters");
    }

    let threads = file.server.threads.unwrap_or(2);
    if threads == 0 {
        return err("server.threads: must be at least 1");
    }
    let public_url = match file.server.public_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => match url::Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                Some(u.trim_end_matches('/').to_string())
            }
            _ => return err(format!("server.public_url: `{u}` is not an http(s) URL")),
        },
    };

    let addrs = address_list(
        "upstream.addrs",
        overrides.upstream.as_ref(),
        file.upstream.addrs,
        "127.0.0.1:8000",
        resolver,
    )?;
    let upstream_tls = file.upstream.tls.unwrap_or(false);
    let ca_file = match file.upstream.ca_file {
        Some(p) if !p.is_file() => {
            return err(format!(
                "upstream.ca_file: {} is not a readable file",
                p.display()
            ))
        }
        other => other,
    };
    let timeout = |key: &str, value: Option<u64>, default: u64| match value.unwrap_or(default) {
        0 => err(format!("upstream.{key}: must be at least 1")),
        ms => Ok(Duration::from_millis(ms)),
    };
    let upstream = UpstreamConfig {
        sni: file.upstream.sni.filter(|s| !s.is_empty()),
        addrs,
        tls: upstream_tls,
        ca_file,
        connect_timeout: timeout(
            "connect_timeout_ms",
            file.upstream.connect_timeout_ms,
            5_000,
        )?,
        read_timeout: timeout("read_timeout_ms", file.upstream.read_timeout_ms, 60_000)?,
        health_check: match file.upstream.health_check_secs.unwrap_or(5) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    };

    let store_path = overrides
        .data
        .clone()
        .or(file.store.path)
        .unwrap_or_else(|| PathBuf::from("data/tachi-gate"));
    if store_path.as_os_str().is_empty() {
        return err("store.path: must not be empty");
    }

    let status_path = file
        .session
        .status_path
        .unwrap_or_else(|| "/api/v1/status".into());
    if !status_path.starts_with('/') || status_path.parse::<http::Uri>().is_err() {
        return err(format!(
            "session.status_path: `{status_path}` must be an absolute path such as /api/v1/status"
        ));
    }
    let cache_ttl_secs = file.session.cache_ttl_secs.unwrap_or(30);
    if cache_ttl_secs > MAX_TTL_SECS {
        return err(format!(
            "session.cache_ttl_secs: at most {MAX_TTL_SECS} (a day)"
        ));
    }
    let session = SessionConfig {
        status_path,
        cache_ttl: Duration::from_secs(cache_ttl_secs),
    };

    let code_ttl_secs = file.oauth.code_ttl_secs.unwrap_or(600);
    if code_ttl_secs == 0 || code_ttl_secs > MAX_TTL_SECS {
        return err(format!(
            "oauth.code_ttl_secs: must be from 1 to {MAX_TTL_SECS} (a day)"
        ));
    }
    let permissions = file
        .oauth
        .permissions
        .unwrap_or_else(|| DEFAULT_PERMISSIONS.iter().map(|p| p.to_string()).collect());
    if permissions.is_empty() {
        return err("oauth.permissions: at least one permission is needed");
    }
    for (i, p) in permissions.iter().enumerate() {
        let valid = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return err(format!(
                "oauth.permissions: `{p}` is not a permission name (lower-case letters, digits and _)"
            ));
        }
        if permissions[..i].contains(p) {
            return err(format!("oauth.permissions: `{p}` is listed twice"));
        }
    }
    let oauth = OAuthConfig {
        code_ttl: Duration::from_secs(code_ttl_secs),
        client_cap: file.oauth.client_cap.unwrap_or(15),
        permissions,
    };

    let unknown_tokens = match file.gate.unknown_tokens.as_deref() {
        None | Some("reject") => UnknownTokens::Reject,
        Some("forward") => UnknownTokens::Forward,
        Some(other) => {
            return err(format!(
                "gate.unknown_tokens: `{other}` is neither \"reject\" nor \"forward\""
            ))
        }
    };
    let mut policies = Vec::with_capacity(file.gate.policy.len());
    for (i, p) in file.gate.policy.into_iter().enumerate() {
        policies.push(validate_policy(i, p, &oauth.permissions)?);
    }
    let gate = GateConfig {
        hide_credentials: file.gate.hide_credentials.unwrap_or(true),
        unknown_tokens,
        policies,
    };

    let window_secs = file.limits.window_secs.unwrap_or(60);
    if window_secs == 0 || window_secs > 3600 {
        return err("limits.window_secs: must be from 1 to 3600");
    }
    let limits = LimitsConfig {
        enabled: file.limits.enabled.unwrap_or(true),
        window_secs,
        oauth_requests: file.limits.oauth_requests.unwrap_or(600),
        failed_auths: file.limits.failed_auths.unwrap_or(30),
    };
    let log_level = file.log.level.unwrap_or_else(|| "info".into());
    if !matches!(
        log_level.as_str(),
        "off" | "error" | "warn" | "info" | "debug" | "trace"
    ) {
        return err(format!(
            "log.level: `{log_level}` is not one of off, error, warn, info, debug, trace"
        ));
    }
    // No real client needs a minute for a request head; below 100 ms even a
    // nearby one could be cut off mid-head.
    let header_timeout = match file.server.header_timeout_ms.unwrap_or(10_000) {
        ms @ 100..=60_000 => Duration::from_millis(ms),
        _ => return err("server.header_timeout_ms: must be from 100 to 60000"),
    };
    let body_timeout = match file.server.body_timeout_ms.unwrap_or(60_000) {
        ms @ 100..=3_600_000 => Duration::from_millis(ms),
        _ => return err("server.body_timeout_ms: must be from 100 to 3600000"),
    };

    Ok(Config {
        // By default beside the store, in a directory only the gate writes to,
        // so no other local user can take the hand-over socket.
        upgrade_sock: file
            .server
            .upgrade_sock
            .unwrap_or_else(|| store_path.join("upgrade.sock")),
        header_timeout,
        body_timeout,
        listen,
        tls,
        admin_listen,
        admin_token,
        threads,
        public_url,
        upstream,
        store_path,
        session,
        oauth,
        gate,
        limits,
        log_level,
    })
}

fn validate_policy(i: usize, p: FilePolicy, known: &[String]) -> Result<Policy, ConfigError> {
    let at = format!("gate.policy[{i}]");
    let path_prefix = p.path_prefix.unwrap_or_else(|| "/".to_string());
    if !path_prefix.starts_with('/') {
        return err(format!(
            "{at}.path_prefix: `{path_prefix}` must start with /"
        ));
    }
    let mut methods = Vec::new();
    for m in p.methods.unwrap_or_default() {
        let upper = m.to_ascii_uppercase();
        if http::Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
            return err(format!("{at}.methods: `{m}` is not an HTTP method"));
        }
        if !methods.contains(&upper) {
            methods.push(upper);
        }
    }
    let mut require = Vec::new();
    for r in p.require {
        if !known.contains(&r) {
            return err(format!(
                "{at}.require: unknown permission `{r}` (known: {})",
                known.join(", ")
            ));
        }
        if !require.contains(&r) {
            require.push(r);
        }
    }
    require.sort();
    Ok(Policy {
        methods,
        path_prefix,
        require,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, &Overrides::default(), None)
    }

    #[test]
    fn empty_file_gives_the_spec_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.upstream.addrs, vec!["127.0.0.1:8000".parse().unwrap()]);
        assert_eq!(c.admin_listen, Some("127.0.0.1:9180".parse().unwrap()));
        assert_eq!(c.store_path, PathBuf::from("data/tachi-gate"));
        assert_eq!(c.session.status_path, "/api/v1/status");
        assert_eq!(c.session.cache_ttl, Duration::from_secs(30));
        assert_eq!(c.oauth.code_ttl, Duration::from_secs(600));
        assert_eq!(c.oauth.client_cap, 15);
        assert_eq!(c.oauth.permissions.len(), 8);
        assert!(c.gate.hide_credentials);
        assert_eq!(c.gate.unknown_tokens, UnknownTokens::Reject);
        assert_eq!(c.threads, 2);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn the_shipped_example_config_is_the_defaults() {
        let text = include_str!("../conf/tachi-gate.toml");
        assert_eq!(parse(text).unwrap(), parse("").unwrap());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(e.0.contains("lisen"), "{e}");
        assert!(e.0.contains("line 3"), "{e}");
        let e = parse("[serverr]\n").unwrap_err();
        assert!(e.0.contains("serverr"), "{e}");
    }

    #[test]
    fn listen_takes_a_string_or_a_list() {
        let c = parse("[server]\nlisten = \"127.0.0.1:1\"").unwrap();
        assert_eq!(c.listen.len(), 1);
        let c = parse("[server]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]").unwrap();
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn bad_address_is_named() {
        let e = parse("[upstream]\naddrs = [\"not an address\"]").unwrap_err();
        assert!(e.0.starts_with("upstream.addrs"), "{e}");
    }

    #[test]
    fn client_timeouts_have_defaults_and_bounds() {
        let defaults = parse("").unwrap();
        assert_eq!(defaults.header_timeout, Duration::from_secs(10));
        assert_eq!(defaults.body_timeout, Duration::from_secs(60));
        let c = parse("[server]\nheader_timeout_ms = 1500\nbody_timeout_ms = 2500").unwrap();
        assert_eq!(c.header_timeout, Duration::from_millis(1500));
        assert_eq!(c.body_timeout, Duration::from_millis(2500));
        for (key, bad) in [
            ("header_timeout_ms", 99),
            ("header_timeout_ms", 60_001),
            ("body_timeout_ms", 0),
            ("body_timeout_ms", 3_600_001),
        ] {
            let e = parse(&format!("[server]\n{key} = {bad}")).unwrap_err();
            assert!(e.0.starts_with(&format!("server.{key}")), "{e}");
        }
    }

    #[test]
    fn policy_with_unknown_permission_is_refused() {
        let e = parse("[[gate.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_scores\"]")
            .unwrap_err();
        assert!(e.0.contains("gate.policy[0].require"), "{e}");
        assert!(e.0.contains("submit_scores"), "{e}");
    }

    #[test]
    fn policy_is_normalised() {
        let c = parse(
            "[[gate.policy]]\nmethods = [\"post\", \"POST\"]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\", \"delete_score\", \"submit_score\"]",
        )
        .unwrap();
        let p = &c.gate.policies[0];
        assert_eq!(p.methods, vec!["POST"]);
        assert_eq!(p.require, vec!["delete_score", "submit_score"]);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let o = Overrides {
            listen: Some("127.0.0.1:9".into()),
            upstream: Some("127.0.0.1:10".into()),
            data: Some(PathBuf::from("/tmp/x")),
        };
        let c = Config::from_toml(
            "[server]\nlisten = \"127.0.0.1:1\"\n[store]\npath = \"y\"",
            &o,
            None,
        )
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(c.upstream.addrs, vec!["127.0.0.1:10".parse().unwrap()]);
        assert_eq!(c.store_path, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn an_upstream_override_may_list_several() {
        let o = Overrides {
            upstream: Some("127.0.0.1:1, 127.0.0.1:2".into()),
            ..Overrides::default()
        };
        let c = Config::from_toml("", &o, None).unwrap();
        assert_eq!(c.upstream.addrs.len(), 2);
    }

    #[test]
    fn admin_token_from_environment_wins() {
        let c = Config::from_toml(
            "[server]\nadmin_token = \"from-the-file-0123456789\"",
            &Overrides::default(),
            Some("from-the-environment-0123".into()),
        )
        .unwrap();
        assert_eq!(c.admin_token.as_deref(), Some("from-the-environment-0123"));
    }

    #[test]
    fn short_admin_tokens_are_refused() {
        assert!(parse("[server]\nadmin_token = \"short\"").is_err());
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert!(parse("[oauth]\ncode_ttl_secs = 0").is_err());
        assert!(parse("[oauth]\ncode_ttl_secs = 86401").is_err());
        assert!(parse("[session]\ncache_ttl_secs = 18446744073709551615").is_err());
        assert!(parse("[session]\ncache_ttl_secs = 0").is_ok());
    }

    #[test]
    fn a_policy_without_prefix_covers_every_path() {
        let c = parse("[[gate.policy]]\nmethods = [\"DELETE\"]").unwrap();
        assert_eq!(c.gate.policies[0].path_prefix, "/");
    }

    #[test]
    fn unknown_tokens_accepts_only_two_values() {
        assert_eq!(
            parse("[gate]\nunknown_tokens = \"forward\"")
                .unwrap()
                .gate
                .unknown_tokens,
            UnknownTokens::Forward
        );
        assert!(parse("[gate]\nunknown_tokens = \"maybe\"").is_err());
    }
}
