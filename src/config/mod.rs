//! Configuration: the TOML file format (`file`) kept apart from the
//! validated [`Config`] the rest of the gate works with (`validate`, one
//! function per section). Every key is described in docs/configuration.md.
//!
//! Every key is optional; unknown keys are an error that names the key and its
//! line, so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
pub mod postgres_url;
mod validate;

use file::{toml_error, FileConfig};
pub use validate::origin_of;
use validate::{resolve, validate};

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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {reason}")]
    Read { path: String, reason: String },
    /// Not TOML, or not of the expected shape (an unknown key, a wrong type).
    #[error("{message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Syntax {
        message: String,
        line: Option<usize>,
    },
    /// A value that cannot be used; `key` names it as the file spells it.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    /// One of the above, in the named file.
    #[error("config {file}: {error}")]
    In {
        file: String,
        error: Box<ConfigError>,
    },
}

/// What the gate does with a Bearer key it never issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTokens {
    /// 401, the default.
    Reject,
    /// Pass the request on untouched and let the upstream judge the key.
    Forward,
}

/// One `[[auth.policy]]` entry.
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
    /// Whether create-code refuses a code bound to no client.
    pub require_client_binding: bool,
    /// Live codes a user may hold; a new one beyond this replaces the oldest.
    pub codes_per_user: usize,
    /// Keys a user may hold; creating one more is refused.
    pub keys_per_user: usize,
    /// Where the authorization endpoint sends a visitor without a Tachi
    /// session to log in (Tachi's front-end login page by default).
    pub login_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub hide_credentials: bool,
    pub unknown_tokens: UnknownTokens,
    pub policies: Vec<Policy>,
}

/// What the upstream is told of a keyed caller (`[identity]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    /// The `X-Tachi-*` headers only: the upstream trusts the network.
    Headers,
    /// The headers plus a signed assertion the upstream can verify.
    Jwt,
}

/// `[identity]`: the signed identity assertion (docs/http-api.md, "The
/// signed identity assertion").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    pub mode: IdentityMode,
    /// The request header that carries the assertion (lower case).
    pub header: http::HeaderName,
    /// The assertion's `aud`.
    pub audience: String,
    /// How long an assertion is valid; a cached one is re-signed at half.
    pub ttl: Duration,
    /// The file of signing keys (default: `identity-keys.json` in the
    /// store directory).
    pub key_file: PathBuf,
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

/// Where the gate keeps its clients, codes and keys (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// The embedded store in `store_path`, held by one process.
    Sled,
    /// A PostgreSQL database that several gates may share.
    Postgres(PostgresConfig),
}

/// `[store]` with `backend = "postgres"`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// A libpq-style URL (`TACHI_GATE_STORE_URL` wins over the file). It may
    /// hold a password: [`PostgresConfig`]'s `Debug` does not print it.
    pub url: String,
    /// Connections kept for requests (the notification listener has one more).
    pub pool_size: usize,
    /// The longest connecting or any one store operation may take; past it
    /// the request is answered 503 rather than left waiting.
    pub timeout: Duration,
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"<hidden>")
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish()
    }
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
    /// Peers whose `X-Forwarded-For` (and PROXY protocol header, with
    /// `proxy_protocol`) name the real client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Whether connections from `trusted_proxies` start with a PROXY
    /// protocol header (v1 or v2) on the public listeners.
    pub proxy_protocol: bool,
    /// Origins, besides the gate's own, whose pages may make session
    /// (cookie) requests that change state, e.g. `https://tachi.example`.
    pub trusted_origins: Vec<String>,
    /// How many streams one HTTP/2 connection may have open at once.
    pub h2_max_streams: u32,
    /// Origins whose pages may read the gate's answers (CORS): `["*"]`, as
    /// Tachi, or a list; empty turns CORS off.
    pub cors_origins: Vec<String>,
    pub upstream: UpstreamConfig,
    /// The sled store's directory; with PostgreSQL only the default home of
    /// `upgrade_sock`.
    pub store_path: PathBuf,
    pub store_backend: StoreBackend,
    pub session: SessionConfig,
    pub oauth: OAuthConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub identity: IdentityConfig,
    /// The default log filter (`RUST_LOG` wins), e.g. `info`.
    pub log_level: String,
    /// Whether Pingora's and the HTTP libraries' own debug lines (which
    /// print headers such as `Cookie`) may be logged.
    pub log_unsafe_debug: bool,
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

/// The environment variable whose value, when set, is `store.url`: a
/// password then need not sit in the configuration file.
pub const STORE_URL_ENV: &str = "TACHI_GATE_STORE_URL";

/// Where the configuration comes from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "conf/tachi-gate.toml";

impl Config {
    /// Loads `path` if given (it must exist), else [`DEFAULT_CONFIG_PATH`] if it
    /// exists, else the built-in defaults; then applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let admin_env = std::env::var("TACHI_GATE_ADMIN_TOKEN").ok();
        let store_url_env = std::env::var(STORE_URL_ENV).ok().filter(|u| !u.is_empty());
        let (text, name) = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => (t, p.display().to_string()),
                Err(e) => {
                    return Err(ConfigError::Read {
                        path: p.display().to_string(),
                        reason: e.to_string(),
                    })
                }
            },
            None => match std::fs::read_to_string(DEFAULT_CONFIG_PATH) {
                Ok(t) => (t, DEFAULT_CONFIG_PATH.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (String::new(), "built-in defaults".to_string())
                }
                Err(e) => {
                    return Err(ConfigError::Read {
                        path: DEFAULT_CONFIG_PATH.to_string(),
                        reason: e.to_string(),
                    })
                }
            },
        };
        Config::from_toml_with_store_url(&text, overrides, admin_env, store_url_env).map_err(
            |error| ConfigError::In {
                file: name,
                error: Box::new(error),
            },
        )
    }

    /// Parses and validates one TOML document.
    pub fn from_toml(
        text: &str,
        overrides: &Overrides,
        admin_token_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_toml_with_store_url(text, overrides, admin_token_env, None)
    }

    /// [`Config::from_toml`], with `store.url` from the environment when set.
    pub fn from_toml_with_store_url(
        text: &str,
        overrides: &Overrides,
        admin_token_env: Option<String>,
        store_url_env: Option<String>,
    ) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let env = validate::Env {
            admin_token: admin_token_env,
            store_url: store_url_env,
        };
        validate(file, overrides, env, &resolve)
    }

    /// As [`Config::from_toml`] with no overrides, but accepting only numeric
    /// addresses, so that it never waits on DNS (for fuzzing and property tests).
    pub fn from_toml_offline(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        validate(
            file,
            &Overrides::default(),
            validate::Env::default(),
            &|value: &str| value.parse().map_err(|e| format!("{e}")),
        )
    }
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
        assert!(c.auth.hide_credentials);
        assert_eq!(c.auth.unknown_tokens, UnknownTokens::Reject);
        assert_eq!(c.threads, 2);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn the_shipped_example_config_is_the_defaults() {
        let text = include_str!("../../conf/tachi-gate.toml");
        assert_eq!(parse(text).unwrap(), parse("").unwrap());
    }

    #[test]
    fn identity_defaults_to_headers_and_jwt_needs_an_issuer() {
        let c = parse("").unwrap();
        assert_eq!(c.identity.mode, IdentityMode::Headers);
        assert_eq!(c.identity.header.as_str(), "x-tachi-identity");
        assert_eq!(c.identity.audience, "tachi");
        assert_eq!(c.identity.ttl, Duration::from_secs(60));
        assert_eq!(
            c.identity.key_file,
            PathBuf::from("data/tachi-gate/identity-keys.json")
        );
        let e = parse("[identity]\nmode = \"jwt\"\n").unwrap_err();
        assert!(e.to_string().starts_with("identity.mode: "), "{e}");
        assert!(e.to_string().contains("server.public_url"), "{e}");
        let c = parse(
            "[server]\npublic_url = \"https://gate.example\"\n\
             [identity]\nmode = \"jwt\"\nheader = \"X-Signed\"\naudience = \"scores\"\n\
             ttl_secs = 30\nkey_file = \"/k.json\"\n",
        )
        .unwrap();
        assert_eq!(c.identity.mode, IdentityMode::Jwt);
        assert_eq!(c.identity.header.as_str(), "x-signed");
        assert_eq!(c.identity.audience, "scores");
        assert_eq!(c.identity.ttl, Duration::from_secs(30));
        assert_eq!(c.identity.key_file, PathBuf::from("/k.json"));
    }

    #[test]
    fn identity_refuses_unusable_values() {
        for (text, key) in [
            ("mode = \"signed\"", "identity.mode"),
            ("header = \"Authorization\"", "identity.header"),
            ("header = \"X-Tachi-User-ID\"", "identity.header"),
            ("header = \"X-Forwarded-User\"", "identity.header"),
            ("header = \"x_tachi_user_id\"", "identity.header"),
            ("header = \"X_Forwarded_User\"", "identity.header"),
            ("header = \"not a header\"", "identity.header"),
            ("audience = \"\"", "identity.audience"),
            ("ttl_secs = 1", "identity.ttl_secs"),
            ("ttl_secs = 3601", "identity.ttl_secs"),
            ("key_file = \"\"", "identity.key_file"),
        ] {
            let e = parse(&format!("[identity]\n{text}\n")).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{key}: ")),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
        let e = parse("[serverr]\n").unwrap_err();
        assert!(e.to_string().contains("serverr"), "{e}");
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
        assert!(e.to_string().starts_with("upstream.addrs"), "{e}");
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
            assert!(e.to_string().starts_with(&format!("server.{key}")), "{e}");
        }
    }

    #[test]
    fn policy_with_unknown_permission_is_refused() {
        let e = parse("[[gate.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_scores\"]")
            .unwrap_err();
        assert!(e.to_string().contains("gate.policy[0].require"), "{e}");
        assert!(e.to_string().contains("submit_scores"), "{e}");
    }

    #[test]
    fn policy_is_normalised() {
        let c = parse(
            "[[gate.policy]]\nmethods = [\"post\", \"POST\"]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\", \"delete_score\", \"submit_score\"]",
        )
        .unwrap();
        let p = &c.auth.policies[0];
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
    fn the_store_is_sled_unless_postgres_is_asked_for() {
        assert_eq!(parse("").unwrap().store_backend, StoreBackend::Sled);
        let c = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://gate@db/gate\"\npool_size = 4",
        )
        .unwrap();
        let StoreBackend::Postgres(pg) = c.store_backend else {
            panic!("not postgres")
        };
        assert_eq!(pg.url, "postgres://gate@db/gate");
        assert_eq!((pg.pool_size, pg.timeout), (4, Duration::from_secs(2)));
        assert!(
            !format!("{pg:?}").contains("gate@db"),
            "the URL is not printed"
        );
        for (text, key) in [
            ("backend = \"postgres\"", "store.url"),
            ("backend = \"mongo\"", "store.backend"),
            ("url = \"postgres://db/x\"", "store.url"),
            (
                "backend = \"postgres\"\nurl = \"postgres://db/x\"\npool_size = 0",
                "store.pool_size",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://db/x\"\ntimeout_ms = 1",
                "store.timeout_ms",
            ),
            (
                "backend = \"postgres\"\nurl = \"mysql://db/x\"",
                "store.url",
            ),
        ] {
            let e = parse(&format!("[store]\n{text}")).unwrap_err();
            assert!(e.to_string().starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn the_store_url_from_the_environment_wins() {
        let c = Config::from_toml_with_store_url(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://file@db/x\"",
            &Overrides::default(),
            None,
            Some("postgres://env:secret@db/x".into()),
        )
        .unwrap();
        let StoreBackend::Postgres(pg) = c.store_backend else {
            panic!("not postgres")
        };
        assert_eq!(pg.url, "postgres://env:secret@db/x");
        // With the URL only in the environment, the file needs none.
        assert!(Config::from_toml_with_store_url(
            "[store]\nbackend = \"postgres\"",
            &Overrides::default(),
            None,
            Some("postgres://db/x".into()),
        )
        .is_ok());
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
        assert_eq!(c.auth.policies[0].path_prefix, "/");
    }

    #[test]
    fn unknown_tokens_accepts_only_two_values() {
        assert_eq!(
            parse("[gate]\nunknown_tokens = \"forward\"")
                .unwrap()
                .auth
                .unknown_tokens,
            UnknownTokens::Forward
        );
        assert!(parse("[gate]\nunknown_tokens = \"maybe\"").is_err());
    }

    #[test]
    fn a_policy_prefix_that_could_never_match_is_refused() {
        for prefix in ["/ir//x", "/%69r/", "/ir/../x", "/ir\\\\x"] {
            let text = format!("[[auth.policy]]\npath_prefix = \"{prefix}\"");
            let e = parse(&text).unwrap_err();
            assert!(e.to_string().contains("would never match"), "{prefix}: {e}");
        }
        assert!(parse("[[auth.policy]]\npath_prefix = \"/ir/x/\"").is_ok());
    }

    #[test]
    fn auth_is_read_under_its_former_name_too_but_not_both() {
        let policy = "[[auth.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]";
        let new = parse(&format!("[auth]\nunknown_tokens = \"forward\"\n{policy}")).unwrap();
        let former = parse(&format!(
            "[gate]\nunknown_tokens = \"forward\"\n{}",
            policy.replace("auth.", "gate.")
        ))
        .unwrap();
        assert_eq!(new.auth, former.auth);
        assert_eq!(new.auth.unknown_tokens, UnknownTokens::Forward);
        assert_eq!(new.auth.policies.len(), 1);
        // Errors name the section as the file spells it.
        let e = parse("[auth]\nunknown_tokens = \"maybe\"").unwrap_err();
        assert!(e.to_string().starts_with("auth.unknown_tokens"), "{e}");
        let e =
            parse("[gate]\nhide_credentials = true\n[auth]\nhide_credentials = true").unwrap_err();
        assert!(e.to_string().contains("former name"), "{e}");
    }
}
