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
}

/// Turns cookies into user IDs.
pub struct Sessions {
    http: reqwest::Client,
    scheme: &'static str,
    /// The upstreams' TLS name, when they are asked for by name.
    host: Option<String>,
    status_path: String,
    ttl: Duration,
    cache: Mutex<HashMap<Digest, (Option<u64>, Instant)>>,
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
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The user the cookie is a live session of, or `None`.
    pub async fn user(
        &self,
        cookie: &str,
        upstreams: &Upstreams,
    ) -> Result<Option<u64>, UpstreamFailed> {
        let key = digest(cookie);
        if let Some(hit) = self.cached(&key) {
            return Ok(hit);
        }
        let upstream = upstreams.next().ok_or(UpstreamFailed::AllDown)?;
        let user = self.ask(cookie, upstream).await?;
        if !self.ttl.is_zero() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= MAX_CACHED {
                    let now = Instant::now();
                    cache.retain(|_, (_, until)| *until > now);
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                }
                cache.insert(key, (user, Instant::now() + self.ttl));
            }
        }
        Ok(user)
    }

    fn cached(&self, key: &Digest) -> Option<Option<u64>> {
        let cache = self.cache.lock().ok()?;
        match cache.get(key) {
            Some((user, until)) if *until > Instant::now() => Some(*user),
            _ => None,
        }
    }

    async fn ask(&self, cookie: &str, upstream: SocketAddr) -> Result<Option<u64>, UpstreamFailed> {
        let url = match &self.host {
            Some(host) => format!(
                "{}://{host}:{}{}",
                self.scheme,
                upstream.port(),
                self.status_path
            ),
            None => format!("{}://{upstream}{}", self.scheme, self.status_path),
        };
        let resp = self
            .http
            .get(&url)
            .header(http::header::COOKIE, cookie)
            .send()
            .await
            .map_err(UpstreamFailed::Unreachable)?;
        if !resp.status().is_success() {
            return Err(UpstreamFailed::Status(resp.status()));
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
