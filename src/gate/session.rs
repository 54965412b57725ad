//! Resolving a session cookie to a Tachi user by asking the upstream's
//! `GET /api/v1/status` (SPEC §3), with a short cache keyed by the cookie's hash.

use std::collections::HashMap;
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

/// The upstream could not tell who the cookie belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailed(pub String);

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
        let upstream = upstreams
            .next()
            .ok_or_else(|| UpstreamFailed("session check: every upstream is down".into()))?;
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
            .map_err(|e| UpstreamFailed(format!("session check: {e}")))?;
        if !resp.status().is_success() {
            return Err(UpstreamFailed(format!(
                "session check: the upstream answered {}",
                resp.status()
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| UpstreamFailed(format!("session check: unreadable answer: {e}")))?;
        whoami(&body)
            .ok_or_else(|| UpstreamFailed("session check: no body.whoami in the answer".into()))
    }
}

/// Reads `body.whoami` from Tachi's status answer: an integer, or `null`.
fn whoami(status: &Value) -> Option<Option<u64>> {
    match status.get("body")?.get("whoami")? {
        Value::Null => Some(None),
        v => v.as_u64().map(Some),
    }
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
}
