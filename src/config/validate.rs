//! From the file format to a usable [`Config`]: one function per section,
//! each naming the key at fault in its error, as the file spells it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use super::file::{
    FileAuth, FileConfig, FileIdentity, FileLimits, FileLog, FileOAuth, FilePolicy, FileServer,
    FileSession, FileStore, FileUpstream, OneOrMany,
};
use super::{
    AuthConfig, Config, ConfigError, IdentityConfig, IdentityMode, LimitsConfig, OAuthConfig,
    Overrides, Policy, PostgresConfig, SessionConfig, StoreBackend, TlsConfig, UnknownTokens,
    UpstreamConfig, DEFAULT_PERMISSIONS, MAX_TTL_SECS, STORE_URL_ENV,
};

/// Values taken from the environment, which win over the file.
#[derive(Debug, Default)]
pub(super) struct Env {
    pub(super) admin_token: Option<String>,
    pub(super) store_url: Option<String>,
}

/// Turns `host:port` into an address, resolving a host name once.
pub(super) type Resolver<'a> = &'a dyn Fn(&str) -> Result<SocketAddr, String>;

/// The resolver for real start-ups: the system's, once per address.
pub(super) fn resolve(value: &str) -> Result<SocketAddr, String> {
    match value.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| "it resolves to no address".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn invalid<T>(key: impl Into<String>, reason: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    })
}

fn socket_addr(key: &str, value: &str, resolver: Resolver<'_>) -> Result<SocketAddr, ConfigError> {
    resolver(value).or_else(|e| {
        invalid(
            key,
            format!("`{value}` is not a usable host:port address ({e})"),
        )
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
        return invalid(key, "at least one address is needed");
    }
    raw.iter().map(|a| socket_addr(key, a, resolver)).collect()
}

/// Checks every section; the first problem found is the error.
pub(super) fn validate(
    file: FileConfig,
    overrides: &Overrides,
    env: Env,
    resolver: Resolver<'_>,
) -> Result<Config, ConfigError> {
    let server = server(file.server, overrides, env.admin_token, resolver)?;
    let upstream = upstream(file.upstream, overrides, resolver)?;
    let (store_path, store_backend) = store(file.store, overrides, env.store_url)?;
    let session = session(file.session)?;
    let oauth = oauth(file.oauth)?;
    let auth = auth(file.auth, file.gate, &oauth.permissions)?;
    let limits = limits(file.limits)?;
    let identity = identity(file.identity, &store_path, server.public_url.as_deref())?;
    let (log_level, log_unsafe_debug) = log(file.log)?;
    Ok(Config {
        // By default beside the store, in a directory only the gate writes to,
        // so no other local user can take the hand-over socket.
        upgrade_sock: server
            .upgrade_sock
            .unwrap_or_else(|| store_path.join("upgrade.sock")),
        header_timeout: server.header_timeout,
        trusted_proxies: server.trusted_proxies,
        proxy_protocol: server.proxy_protocol,
        trusted_origins: server.trusted_origins,
        h2_max_streams: server.h2_max_streams,
        cors_origins: server.cors_origins,
        body_timeout: server.body_timeout,
        listen: server.listen,
        tls: server.tls,
        admin_listen: server.admin_listen,
        admin_token: server.admin_token,
        threads: server.threads,
        public_url: server.public_url,
        upstream,
        store_path,
        store_backend,
        session,
        oauth,
        auth,
        limits,
        identity,
        log_level,
        log_unsafe_debug,
    })
}

/// `[server]` and `[server.tls]`, before the upgrade socket's default
/// (which depends on the store path) is filled in.
struct ServerSection {
    listen: Vec<SocketAddr>,
    tls: Option<TlsConfig>,
    admin_listen: Option<SocketAddr>,
    admin_token: Option<String>,
    threads: usize,
    public_url: Option<String>,
    upgrade_sock: Option<PathBuf>,
    header_timeout: Duration,
    body_timeout: Duration,
    trusted_proxies: Vec<ipnet::IpNet>,
    proxy_protocol: bool,
    trusted_origins: Vec<String>,
    h2_max_streams: u32,
    cors_origins: Vec<String>,
}

fn server(
    file: FileServer,
    overrides: &Overrides,
    admin_token_env: Option<String>,
    resolver: Resolver<'_>,
) -> Result<ServerSection, ConfigError> {
    let tls = match file.tls {
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
                Some(p) => invalid(
                    format!("server.tls.{key}"),
                    format!("{} is not a readable file", p.display()),
                ),
                None => invalid(format!("server.tls.{key}"), "a PEM file path is needed"),
            };
            Some(TlsConfig {
                listen,
                cert: file_of("cert", t.cert)?,
                key: file_of("key", t.key)?,
            })
        }
    };
    // `listen = []` is allowed when TLS listeners take its place.
    let listen = match (&overrides.listen, &file.listen, &tls) {
        (None, Some(OneOrMany::Many(v)), Some(_)) if v.is_empty() => Vec::new(),
        _ => address_list(
            "server.listen",
            overrides.listen.as_ref(),
            file.listen,
            "127.0.0.1:8080",
            resolver,
        )?,
    };

    let admin_raw = file.admin_listen.unwrap_or_else(|| "127.0.0.1:9180".into());
    let admin_listen = if admin_raw.is_empty() {
        None
    } else {
        Some(socket_addr("server.admin_listen", &admin_raw, resolver)?)
    };
    let admin_token = admin_token_env
        .filter(|t| !t.is_empty())
        .or(file.admin_token.filter(|t| !t.is_empty()));
    if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
        return invalid(
            "server.admin_token (or TACHI_GATE_ADMIN_TOKEN)",
            "use at least 16 characters",
        );
    }

    let threads = file.threads.unwrap_or(2);
    if threads == 0 {
        return invalid("server.threads", "must be at least 1");
    }
    let public_url = match file.public_url.filter(|u| !u.is_empty()) {
        None => None,
        Some(u) => match url::Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                Some(u.trim_end_matches('/').to_string())
            }
            _ => return invalid("server.public_url", format!("`{u}` is not an http(s) URL")),
        },
    };
    // No real client needs a minute for a request head; below 100 ms even a
    // nearby one could be cut off mid-head.
    let header_timeout = match file.header_timeout_ms.unwrap_or(10_000) {
        ms @ 100..=60_000 => Duration::from_millis(ms),
        _ => return invalid("server.header_timeout_ms", "must be from 100 to 60000"),
    };
    let body_timeout = match file.body_timeout_ms.unwrap_or(60_000) {
        ms @ 100..=3_600_000 => Duration::from_millis(ms),
        _ => return invalid("server.body_timeout_ms", "must be from 100 to 3600000"),
    };
    let mut trusted_proxies = Vec::new();
    for entry in file.trusted_proxies.unwrap_or_default() {
        // A lone address is a network of one.
        let net = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match net {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => {
                return invalid(
                    "server.trusted_proxies",
                    format!("`{entry}` is neither an IP address nor a CIDR network"),
                )
            }
        }
    }
    let proxy_protocol = file.proxy_protocol.unwrap_or(false);
    if proxy_protocol && trusted_proxies.is_empty() {
        return invalid(
            "server.proxy_protocol",
            "needs server.trusted_proxies: only they may send a PROXY header",
        );
    }
    let mut trusted_origins = Vec::new();
    for entry in file.trusted_origins.unwrap_or_default() {
        match origin_of(&entry) {
            Some(origin) => trusted_origins.push(origin),
            None => {
                return invalid(
                    "server.trusted_origins",
                    format!("`{entry}` is not an http(s) origin such as https://tachi.example"),
                )
            }
        }
    }
    let h2_max_streams = match file.h2_max_streams.unwrap_or(100) {
        n @ 1..=1000 => n,
        _ => return invalid("server.h2_max_streams", "must be from 1 to 1000"),
    };
    let mut cors_origins = Vec::new();
    for entry in file.cors_origins.unwrap_or_else(|| vec!["*".to_string()]) {
        match entry.as_str() {
            "*" => cors_origins.push(entry),
            _ => match origin_of(&entry) {
                Some(origin) => cors_origins.push(origin),
                None => {
                    return invalid(
                        "server.cors_origins",
                        format!("`{entry}` is neither \"*\" nor an http(s) origin"),
                    )
                }
            },
        }
    }
    Ok(ServerSection {
        cors_origins,
        trusted_proxies,
        proxy_protocol,
        trusted_origins,
        h2_max_streams,
        listen,
        tls,
        admin_listen,
        admin_token,
        threads,
        public_url,
        upgrade_sock: file.upgrade_sock,
        header_timeout,
        body_timeout,
    })
}

/// The ASCII serialisation of a URL's origin (RFC 6454), as browsers send it
/// in `Origin`: scheme, host and a port other than the default.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return None;
    }
    Some(parsed.origin().ascii_serialization())
}

fn upstream(
    file: FileUpstream,
    overrides: &Overrides,
    resolver: Resolver<'_>,
) -> Result<UpstreamConfig, ConfigError> {
    let addrs = address_list(
        "upstream.addrs",
        overrides.upstream.as_ref(),
        file.addrs,
        "127.0.0.1:8000",
        resolver,
    )?;
    let ca_file = match file.ca_file {
        Some(p) if !p.is_file() => {
            return invalid(
                "upstream.ca_file",
                format!("{} is not a readable file", p.display()),
            )
        }
        other => other,
    };
    let timeout = |key: &str, value: Option<u64>, default: u64| match value.unwrap_or(default) {
        0 => invalid(format!("upstream.{key}"), "must be at least 1"),
        ms => Ok(Duration::from_millis(ms)),
    };
    Ok(UpstreamConfig {
        sni: file.sni.filter(|s| !s.is_empty()),
        addrs,
        tls: file.tls.unwrap_or(false),
        ca_file,
        connect_timeout: timeout("connect_timeout_ms", file.connect_timeout_ms, 5_000)?,
        read_timeout: timeout("read_timeout_ms", file.read_timeout_ms, 60_000)?,
        health_check: match file.health_check_secs.unwrap_or(5) {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
    })
}

/// The default number of pooled PostgreSQL connections.
const DEFAULT_POOL_SIZE: usize = 16;

fn store(
    file: FileStore,
    overrides: &Overrides,
    url_env: Option<String>,
) -> Result<(PathBuf, StoreBackend), ConfigError> {
    let path = overrides
        .data
        .clone()
        .or(file.path)
        .unwrap_or_else(|| PathBuf::from("data/tachi-gate"));
    if path.as_os_str().is_empty() {
        return invalid("store.path", "must not be empty");
    }
    let backend = match file.backend.as_deref().unwrap_or("sled") {
        "sled" => {
            for (key, set) in [
                ("url", file.url.is_some()),
                ("pool_size", file.pool_size.is_some()),
                ("timeout_ms", file.timeout_ms.is_some()),
            ] {
                if set {
                    return invalid(
                        format!("store.{key}"),
                        "only applies with backend = \"postgres\"",
                    );
                }
            }
            StoreBackend::Sled
        }
        "postgres" => {
            let Some(url) = url_env.or(file.url).filter(|u| !u.is_empty()) else {
                return invalid(
                    "store.url",
                    format!("backend = \"postgres\" needs a URL here or in {STORE_URL_ENV}"),
                );
            };
            if let Err(reason) = super::postgres_url::check_url(&url) {
                return invalid("store.url", reason);
            }
            let pool_size = file.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
            if !(1..=1000).contains(&pool_size) {
                return invalid("store.pool_size", "from 1 to 1000");
            }
            StoreBackend::Postgres(PostgresConfig {
                url,
                pool_size,
                timeout: timeout_between("store.timeout_ms", file.timeout_ms, 2_000, 50, 60_000)?,
            })
        }
        other => {
            return invalid(
                "store.backend",
                format!("`{other}` is neither \"sled\" nor \"postgres\""),
            )
        }
    };
    Ok((path, backend))
}

/// A duration in milliseconds within `min..=max`, else `default`.
fn timeout_between(
    key: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    let ms = value.unwrap_or(default);
    if !(min..=max).contains(&ms) {
        return invalid(key, format!("from {min} to {max}"));
    }
    Ok(Duration::from_millis(ms))
}

/// The longest an identity assertion may be valid. It is a bearer
/// credential for the upstream: short is the point.
const MAX_IDENTITY_TTL_SECS: u64 = 3600;

fn identity(
    file: FileIdentity,
    store_path: &std::path::Path,
    public_url: Option<&str>,
) -> Result<IdentityConfig, ConfigError> {
    let mode = match file.mode.as_deref().unwrap_or("headers") {
        "headers" => IdentityMode::Headers,
        "jwt" => IdentityMode::Jwt,
        other => {
            return invalid(
                "identity.mode",
                format!("`{other}` is not \"headers\" or \"jwt\""),
            )
        }
    };
    if mode == IdentityMode::Jwt && public_url.is_none() {
        return invalid(
            "identity.mode",
            "\"jwt\" needs server.public_url: it is the assertion's issuer (`iss`), \
             which the upstream checks",
        );
    }
    let header_text = file.header.unwrap_or_else(|| "X-Tachi-Identity".into());
    let header = match http::HeaderName::from_bytes(header_text.as_bytes()) {
        Ok(h) if !reserved_header(h.as_str()) => h,
        Ok(_) => {
            return invalid(
                "identity.header",
                format!("`{header_text}` is a header the gate or HTTP itself already uses"),
            )
        }
        Err(_) => {
            return invalid(
                "identity.header",
                format!("`{header_text}` is not a header name"),
            )
        }
    };
    let audience = file.audience.unwrap_or_else(|| "tachi".into());
    if audience.is_empty() {
        return invalid("identity.audience", "must not be empty");
    }
    let ttl_secs = file.ttl_secs.unwrap_or(60);
    if !(2..=MAX_IDENTITY_TTL_SECS).contains(&ttl_secs) {
        return invalid(
            "identity.ttl_secs",
            format!("must be between 2 and {MAX_IDENTITY_TTL_SECS}"),
        );
    }
    let key_file = match file.key_file {
        Some(p) if p.as_os_str().is_empty() => {
            return invalid("identity.key_file", "must not be empty")
        }
        Some(p) => p,
        None => store_path.join("identity-keys.json"),
    };
    Ok(IdentityConfig {
        mode,
        header,
        audience,
        ttl: Duration::from_secs(ttl_secs),
        key_file,
    })
}

/// Headers the assertion may not travel in: the gate's other identity
/// headers (`auth::identity::IDENTITY_HEADERS`, whose tests check this
/// list holds them), the credentials and forwarding headers it rewrites,
/// and those HTTP gives a meaning of its own.
fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 17] = [
        "x-tachi-user-id",
        "x-tachi-permissions",
        "x-tachi-client-id",
        "x-tachi-token-id",
        "authorization",
        "cookie",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "forwarded",
        "x-real-ip",
        "proxy-authorization",
        "keep-alive",
    ];
    // With `_` read as `-`, as the proxy strips them and CGI-style
    // servers merge the two.
    let name = name.replace('_', "-");
    RESERVED.contains(&name.as_str()) || name.starts_with("x-forwarded-")
}

fn session(file: FileSession) -> Result<SessionConfig, ConfigError> {
    let status_path = file.status_path.unwrap_or_else(|| "/api/v1/status".into());
    if !status_path.starts_with('/') || status_path.parse::<http::Uri>().is_err() {
        return invalid(
            "session.status_path",
            format!("`{status_path}` must be an absolute path such as /api/v1/status"),
        );
    }
    let cache_ttl_secs = file.cache_ttl_secs.unwrap_or(30);
    if cache_ttl_secs > MAX_TTL_SECS {
        return invalid(
            "session.cache_ttl_secs",
            format!("at most {MAX_TTL_SECS} (a day)"),
        );
    }
    Ok(SessionConfig {
        status_path,
        cache_ttl: Duration::from_secs(cache_ttl_secs),
    })
}

fn oauth(file: FileOAuth) -> Result<OAuthConfig, ConfigError> {
    let code_ttl_secs = file.code_ttl_secs.unwrap_or(600);
    if code_ttl_secs == 0 || code_ttl_secs > MAX_TTL_SECS {
        return invalid(
            "oauth.code_ttl_secs",
            format!("must be from 1 to {MAX_TTL_SECS} (a day)"),
        );
    }
    let permissions = file
        .permissions
        .unwrap_or_else(|| DEFAULT_PERMISSIONS.iter().map(|p| p.to_string()).collect());
    if permissions.is_empty() {
        return invalid("oauth.permissions", "at least one permission is needed");
    }
    for (i, p) in permissions.iter().enumerate() {
        let valid = !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return invalid(
                "oauth.permissions",
                format!("`{p}` is not a permission name (lower-case letters, digits and _)"),
            );
        }
        if permissions[..i].contains(p) {
            return invalid("oauth.permissions", format!("`{p}` is listed twice"));
        }
    }
    let codes_per_user = match file.codes_per_user.unwrap_or(20) {
        0 => return invalid("oauth.codes_per_user", "must be at least 1"),
        n => n,
    };
    let keys_per_user = match file.keys_per_user.unwrap_or(200) {
        0 => return invalid("oauth.keys_per_user", "must be at least 1"),
        n => n,
    };
    Ok(OAuthConfig {
        code_ttl: Duration::from_secs(code_ttl_secs),
        client_cap: file.client_cap.unwrap_or(15),
        permissions,
        require_client_binding: file.require_client_binding.unwrap_or(false),
        codes_per_user,
        keys_per_user,
        login_url: file.login_url.unwrap_or_else(|| "/login".to_string()),
    })
}

/// `[auth]`, or `[gate]`, its former name; errors name the section as the
/// file does.
fn auth(
    file: Option<FileAuth>,
    former: Option<FileAuth>,
    known: &[String],
) -> Result<AuthConfig, ConfigError> {
    let (section, file) = match (file, former) {
        (Some(_), Some(_)) => {
            return invalid(
                "gate",
                "[gate] is the former name of [auth]: use one or the other",
            )
        }
        (Some(f), None) => ("auth", f),
        (None, Some(f)) => ("gate", f),
        (None, None) => ("auth", FileAuth::default()),
    };
    let unknown_tokens = match file.unknown_tokens.as_deref() {
        None | Some("reject") => UnknownTokens::Reject,
        Some("forward") => UnknownTokens::Forward,
        Some(other) => {
            return invalid(
                format!("{section}.unknown_tokens"),
                format!("`{other}` is neither \"reject\" nor \"forward\""),
            )
        }
    };
    let mut policies = Vec::with_capacity(file.policy.len());
    for (i, p) in file.policy.into_iter().enumerate() {
        policies.push(policy(&format!("{section}.policy[{i}]"), p, known)?);
    }
    Ok(AuthConfig {
        hide_credentials: file.hide_credentials.unwrap_or(true),
        unknown_tokens,
        policies,
    })
}

/// One `[[auth.policy]]` entry, named `at` in errors.
fn policy(at: &str, p: FilePolicy, known: &[String]) -> Result<Policy, ConfigError> {
    let path_prefix = p.path_prefix.unwrap_or_else(|| "/".to_string());
    if !path_prefix.starts_with('/') {
        return invalid(
            format!("{at}.path_prefix"),
            format!("`{path_prefix}` must start with /"),
        );
    }
    // Requests are matched in a canonical form (escapes decoded, `/` not
    // repeated, no dot segments or backslashes): a prefix in another form
    // would never match, and protect nothing.
    let uncanonical = path_prefix.contains("//")
        || path_prefix.contains(['%', '\\'])
        || path_prefix.split('/').any(|s| s == "." || s == "..");
    if uncanonical {
        return invalid(
            format!("{at}.path_prefix"),
            format!(
                "`{path_prefix}` would never match: write it without escapes, repeated /, . or .. segments, or backslashes"
            ),
        );
    }
    let mut methods = Vec::new();
    for m in p.methods.unwrap_or_default() {
        let upper = m.to_ascii_uppercase();
        if http::Method::from_bytes(upper.as_bytes()).is_err() || upper.is_empty() {
            return invalid(
                format!("{at}.methods"),
                format!("`{m}` is not an HTTP method"),
            );
        }
        if !methods.contains(&upper) {
            methods.push(upper);
        }
    }
    let mut require = Vec::new();
    for r in p.require {
        if !known.contains(&r) {
            return invalid(
                format!("{at}.require"),
                format!("unknown permission `{r}` (known: {})", known.join(", ")),
            );
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

fn limits(file: FileLimits) -> Result<LimitsConfig, ConfigError> {
    let window_secs = file.window_secs.unwrap_or(60);
    if window_secs == 0 || window_secs > 3600 {
        return invalid("limits.window_secs", "must be from 1 to 3600");
    }
    Ok(LimitsConfig {
        enabled: file.enabled.unwrap_or(true),
        window_secs,
        oauth_requests: file.oauth_requests.unwrap_or(600),
        failed_auths: file.failed_auths.unwrap_or(30),
    })
}

fn log(file: FileLog) -> Result<(String, bool), ConfigError> {
    let level = file.level.unwrap_or_else(|| "info".into());
    if !matches!(
        level.as_str(),
        "off" | "error" | "warn" | "info" | "debug" | "trace"
    ) {
        return invalid(
            "log.level",
            format!("`{level}` is not one of off, error, warn, info, debug, trace"),
        );
    }
    Ok((level, file.unsafe_debug.unwrap_or(false)))
}
