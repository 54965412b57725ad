//! Resolving a session cookie to a Tachi user by asking the upstream's
//! `GET /api/v1/status` (SPEC §3), with a short cache keyed by the cookie's hash.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

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
    status_path: String,
    ttl: Duration,
    cache: Mutex<HashMap<Digest, (Option<u64>, Instant)>>,
}

impl Sessions {
    pub fn new(status_path: String, ttl: Duration) -> Sessions {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Sessions {
            http,
            status_path,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
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
        let url = format!("http://{upstream}{}", self.status_path);
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
