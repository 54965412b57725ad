//! Everything a request handler needs, built once at start-up and shared.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::config::Config;
use crate::gate::session::{Sessions, UpstreamFailed};
use crate::gate::{cookie_header, credentials};
use crate::limits::Limits;
use crate::reply::Reply;
use crate::store::Store;
use crate::upstream::Upstreams;

/// The gate's shared state.
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub sessions: Sessions,
    pub upstreams: Upstreams,
    pub limits: Limits,
}

impl App {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>) -> Result<App, String> {
        let upstreams = Upstreams::new(&config.upstream.addrs, config.upstream.health_check)
            .map_err(|e| format!("upstream.addrs: {e}"))?;
        Ok(App {
            sessions: Sessions::new(
                config.session.status_path.clone(),
                config.session.cache_ttl,
                &config.upstream,
            )?,
            upstreams,
            limits: Limits::new(config.limits.clone()),
            config,
            store,
        })
    }

    /// The user whose live session the request's cookies are; `None` without
    /// cookies or a session. A failed lookup is logged here, once for every caller.
    pub async fn cookie_user(&self, headers: &HeaderMap) -> Result<Option<u64>, UpstreamFailed> {
        let Some(cookie) = cookie_header(headers) else {
            return Ok(None);
        };
        self.sessions
            .user(&cookie, &self.upstreams)
            .await
            .inspect_err(|e| log::warn!("{}", e.0))
    }

    /// The session user of a request to one of the gate's own routes: `None`
    /// for guests and for API-key requests (a request with `Authorization` is
    /// never a session, SPEC §3); a 502 answer when the upstream cannot say.
    pub async fn session_of(&self, req: &ApiRequest) -> Result<Option<u64>, Reply> {
        if req.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(None);
        }
        self.cookie_user(&req.headers)
            .await
            .map_err(|_| Reply::upstream_unavailable())
    }

    /// The session's user, for routes only a session may use; without one,
    /// a 401 saying `refusal`.
    pub async fn session_required(&self, req: &ApiRequest, refusal: &str) -> Result<u64, Reply> {
        self.session_of(req)
            .await?
            .ok_or_else(|| Reply::failure(401, refusal))
    }
}

/// A request to one of the gate's own routes, body already read.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Whether it arrived over TLS.
    pub tls: bool,
    /// The request target's authority (HTTP/2's `:authority`), if any.
    pub authority: Option<String>,
}

impl ApiRequest {
    /// The Content-Type header, if it is valid text.
    pub fn content_type(&self) -> Option<&str> {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
    }

    /// The parsed `Authorization` header, if one was sent.
    /// Several count as an unusable scheme.
    pub fn authorization(&self) -> Option<credentials::Authorization<'_>> {
        credentials::of_request(&self.headers).unwrap_or(Some(credentials::Authorization::Other))
    }
}
