//! Resolving a session cookie to a Tachi user by asking the upstream's
//! `GET /api/v1/status` (docs/http-api.md, "What the upstream receives"), with a short cache keyed by the cookie's hash.

use std::collections::HashMap;

use http::HeaderMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::UpstreamConfig;
use crate::store::{digest, Digest};
use crate::upstream::Upstreams;

/// Cached answers beyond this many are dropped wholesale (expired ones first),
/// so a flood of made-up cookies cannot grow memory without bound.
const MAX_CACHED: usize = 100_000;

/// Why the upstream could not tell who a cookie belongs to. Each is logged
/// once and answered 502: the gate cannot decide for the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailed {
    #[error("session check: every upstream is down")]
    AllDown,
    #[error("session check: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("session check: the upstream answered {0}")]
    Status(http::StatusCode),
    #[error("session check: unreadable answer: {0}")]
    Unreadable(#[source] reqwest::Error),
    #[error("session check: no body.whoami in the answer")]
    NoWhoami,
    #[error("user lookup: no body.id in the answer")]
    NoUserId,
    /// The upstream refused the session itself (a banned user: Tachi
    /// answers 403 "You are banned from …"): its answer is passed on.
    #[error("session check: the upstream refused the session ({status}): {description}")]
    Refused { status: u16, description: String },
}

/// Tachi's route for one user by ID or name (`router/api/v1/users/_userID`).
const USER_PATH: &str = "/api/v1/users/";

/// Tachi's `authLevel` of an administrator (its `UserAuthLevels.ADMIN`).
const ADMIN_AUTH_LEVEL: u64 = 3;

/// A Tachi user, as the gate needs to know one named in a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TachiUser {
    pub id: u64,
    /// Tachi exempts administrators from the client cap.
    pub admin: bool,
}

/// Answers from the upstream, kept for a while: bounded, so a flood of
/// made-up cookies or names cannot grow memory (past the bound the expired
/// ones go, then all).
struct TtlCache<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        let map = self.map.lock().ok()?;
        match map.get(key) {
            Some((value, until)) if *until > Instant::now() => Some(value.clone()),
            _ => None,
        }
    }

    fn put(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= MAX_CACHED {
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
                if map.len() >= MAX_CACHED {
                    map.clear();
                }
            }
            map.insert(key, (value, Instant::now() + self.ttl));
        }
    }
}

/// Turns cookies into user IDs, and user names into users.
pub struct Sessions {
    http: reqwest::Client,
    scheme: &'static str,
    /// The upstreams' TLS name, when they are asked for by name.
    host: Option<String>,
    status_path: String,
    cache: TtlCache<Digest, Option<u64>>,
    /// By the name or ID as a URL gave it, lower-cased (Tachi's names
    /// compare regardless of case).
    users: TtlCache<String, Option<TachiUser>>,
}

impl Sessions {
    /// Asks the upstreams over TLS when `upstream.tls` is on, with its SNI and CA file.
    pub fn new(
        status_path: String,
        ttl: Duration,
        upstream: &UpstreamConfig,
    ) -> Result<Sessions, String> {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5));
        let mut host = None;
        if upstream.tls {
            if let Some(path) = &upstream.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    format!("upstream.ca_file: cannot read {}: {e}", path.display())
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("upstream.ca_file: {}: {e}", path.display()))?;
                for cert in certs {
                    builder = builder.add_root_certificate(cert);
                }
            }
            // A named upstream is asked for by name (for SNI and the certificate),
            // connecting to the configured addresses.
            if let Some(name) = upstream.tls_name() {
                builder = builder.resolve_to_addrs(name, &upstream.addrs);
                host = Some(name.to_string());
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up session checks: {e}"))?;
        Ok(Sessions {
            http,
            scheme: if upstream.tls { "https" } else { "http" },
            host,
            status_path,
            cache: TtlCache::new(ttl),
            users: TtlCache::new(ttl),
        })
    }

    /// The user the cookie is a live session of, or `None`.
    pub async fn user(
        &self,
        cookie: &str,
        upstreams: &Upstreams,
    ) -> Result<Option<u64>, UpstreamFailed> {
        let key = digest(cookie);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let upstream = upstreams.next().ok_or(UpstreamFailed::AllDown)?;
        let user = self.ask(cookie, upstream).await?;
        self.cache.put(key, user);
        Ok(user)
    }

    /// The Tachi user a URL names by ID or by name (in any case), or `None`
    /// when Tachi knows no such user.
    pub async fn named_user(
        &self,
        name: &str,
        upstreams: &Upstreams,
    ) -> Result<Option<TachiUser>, UpstreamFailed> {
        let key = name.to_lowercase();
        if let Some(hit) = self.users.get(&key) {
            return Ok(hit);
        }
        let upstream = upstreams.next().ok_or(UpstreamFailed::AllDown)?;
        let segment =
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let url = self.url(upstream, &format!("{USER_PATH}{segment}"));
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(UpstreamFailed::Unreachable)?;
        let user = match resp.status() {
            http::StatusCode::NOT_FOUND => None,
            status if status.is_success() => {
                let body: Value = resp.json().await.map_err(UpstreamFailed::Unreadable)?;
                let id = body["body"]["id"]
                    .as_u64()
                    .ok_or(UpstreamFailed::NoUserId)?;
                let admin = body["body"]["authLevel"].as_u64() == Some(ADMIN_AUTH_LEVEL);
                Some(TachiUser { id, admin })
            }
            status => return Err(UpstreamFailed::Status(status)),
        };
        self.users.put(key, user);
        Ok(user)
    }

    /// The URL of `path` on `upstream`, by the upstreams' TLS name when they have one.
    fn url(&self, upstream: SocketAddr, path: &str) -> String {
        match &self.host {
            Some(host) => format!("{}://{host}:{}{path}", self.scheme, upstream.port()),
            None => format!("{}://{upstream}{path}", self.scheme),
        }
    }

    async fn ask(&self, cookie: &str, upstream: SocketAddr) -> Result<Option<u64>, UpstreamFailed> {
        let url = self.url(upstream, &self.status_path);
        let resp = self
            .http
            .get(&url)
            .header(http::header::COOKIE, cookie)
            .send()
            .await
            .map_err(UpstreamFailed::Unreachable)?;
        let status = resp.status();
        if status.is_client_error() {
            let body: Value = resp.json().await.unwrap_or_default();
            let description = body["description"]
                .as_str()
                .unwrap_or("The Tachi server refused this session.")
                .chars()
                .take(500)
                .collect();
            return Err(UpstreamFailed::Refused {
                status: status.as_u16(),
                description,
            });
        }
        if !status.is_success() {
            return Err(UpstreamFailed::Status(status));
        }
        let body: Value = resp.json().await.map_err(UpstreamFailed::Unreadable)?;
        whoami(&body).ok_or(UpstreamFailed::NoWhoami)
    }
}

/// Reads `body.whoami` from Tachi's status answer: an integer, or `null`.
fn whoami(status: &Value) -> Option<Option<u64>> {
    match status.get("body")?.get("whoami")? {
        Value::Null => Some(None),
        v => v.as_u64().map(Some),
    }
}

/// All `Cookie` headers of a request joined as one (HTTP/2 splits them).
pub fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let mut parts = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let first = parts.next()?;
    Some(parts.fold(first.to_string(), |mut acc, p| {
        acc.push_str("; ");
        acc.push_str(p);
        acc
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whoami_is_an_integer_or_null() {
        assert_eq!(whoami(&json!({"body": {"whoami": 7}})), Some(Some(7)));
        assert_eq!(whoami(&json!({"body": {"whoami": null}})), Some(None));
        assert_eq!(whoami(&json!({"body": {"whoami": "7"}})), None);
        assert_eq!(whoami(&json!({"body": {}})), None);
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie_header(&h).as_deref(), Some("a=1; b=2"));
        assert_eq!(cookie_header(&HeaderMap::new()), None);
    }
}
