//! The admin listener: `GET /healthz`, and the admin API under `/admin/`
//! behind `Authorization: Bearer <admin token>`. It never serves the public
//! routes, and the public listeners never serve these.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use serde_json::json;

use super::{decode_path, run, AdminOp};
use crate::app::App;
use crate::http::authorization::{self, Authorization};
use crate::http::body;
use crate::http::io::{client_ip, read_body, write_body, write_reply};
use crate::http::reply::Reply;
use crate::limits::Limits;
use crate::store::{digest, digests_match, Digest};
use crate::telemetry;

/// The admin listener as a Pingora service that answers everything itself.
pub struct AdminService {
    app: Arc<App>,
    /// Failed admin-token attempts, counted apart from the public
    /// listeners' failures so neither can lock the other out.
    failures: Limits,
    /// SHA-256 of the admin token; `None` turns the admin API off.
    token: Option<Digest>,
}

impl AdminService {
    pub fn new(app: Arc<App>) -> AdminService {
        let token = app.config.admin_token.as_deref().map(digest);
        let failures = Limits::new(app.config.limits.clone());
        AdminService {
            app,
            token,
            failures,
        }
    }

    /// Whether the request carries the admin token (compared in constant time).
    fn authorised(&self, expected: &Digest, session: &Session) -> bool {
        let header = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION);
        match header.map(|h| authorization::parse(h.as_bytes())) {
            Some(Authorization::Bearer(t)) => {
                std::str::from_utf8(t).is_ok_and(|t| digests_match(expected, &digest(t)))
            }
            _ => false,
        }
    }

    async fn answer(&self, session: &mut Session) -> Reply {
        let header = session.req_header();
        let path = header.uri.path().to_string();
        if path == "/healthz" {
            if !reads(&header.method) {
                return Reply::method_not_allowed("GET, HEAD");
            }
            // A read the store must be able to answer; a failure means it cannot serve.
            let probe = match self.app.store.healthy() {
                Ok(()) => self.app.store.key(&[0; 32]).await.map(|_| ()),
                Err(e) => Err(e),
            };
            return match probe {
                Ok(()) => Reply::success("Serving.", json!({"store": "open"})),
                Err(e) => {
                    log::error!("health check: {e}");
                    // Which part still works: keys held in memory are still
                    // checked; nothing that needs the store is served.
                    // The reason is in the log only: this answer needs no token.
                    Reply::failure(
                        503,
                        "The store is not serving: keys held in memory are still \
                         checked; other keys, exchanges and changes are refused.",
                    )
                    .header("Retry-After", "1")
                }
            };
        }
        if path == "/.well-known/jwks.json" {
            if !reads(&header.method) {
                return Reply::method_not_allowed("GET, HEAD");
            }
            return crate::api::jwks::jwks(&self.app);
        }
        let Some(rest) = path.strip_prefix("/admin") else {
            return Reply::failure(404, "Not found.");
        };
        let Some(expected) = &self.token else {
            return Reply::failure(
                404,
                "The admin API is off: set server.admin_token or TACHI_GATE_ADMIN_TOKEN.",
            );
        };
        if !self.authorised(expected, session) {
            log::warn!(target: "audit", "admin API: a request with a wrong or missing admin token");
            let refusal = Reply::failure(401, "A valid admin token is required.")
                .header("WWW-Authenticate", "Bearer realm=\"tachi-gate admin\"");
            return self.failures.failure(client_ip(session)).unwrap_or(refusal);
        }
        let method = header.method.clone();
        let query = body::query_object(header.uri.query());
        let content_type = header
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = match read_body(session).await {
            Ok(b) => b,
            Err(e) => return e.reply(),
        };
        let body = match body::object(content_type.as_deref(), &bytes) {
            Ok((_, m)) => m,
            Err(e) => return e.reply(),
        };
        let decoded = decode_path(rest);
        match AdminOp::from_http(&method, &decoded, &query, body) {
            Ok(op) => run(&self.app, op).await,
            Err(reply) => reply,
        }
    }
}

/// GET, or HEAD: the same answer, whose content `write_body` leaves out
/// (health checkers and scrapers may send either).
fn reads(method: &http::Method) -> bool {
    matches!(*method, http::Method::GET | http::Method::HEAD)
}

#[async_trait]
impl ProxyHttp for AdminService {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let header = session.req_header();
        if header.uri.path() == "/metrics" && reads(&header.method) {
            let text = telemetry::render();
            write_body(session, 200, "text/plain; version=0.0.4", text, &[]).await?;
            return Ok(true);
        }
        let reply = self.answer(session).await;
        write_reply(session, &reply).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Every request is answered in request_filter.
        Err(Error::explain(
            ErrorType::InternalError,
            "the admin listener proxies nothing",
        ))
    }
}
