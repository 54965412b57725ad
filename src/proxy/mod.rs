//! The Pingora glue: routes a request to the gate's own handlers or through
//! the gate to the upstream. Decisions live elsewhere; this file only moves
//! bytes and headers between Pingora and them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::api::routes;
use crate::app::App;
use crate::auth::{shapes, Caller, Identity, Rejection};
use crate::http::cors::{self, Cors};
use crate::http::forwarded;
use crate::http::io::{client_ip, is_tls, read_body, write_body, write_reply};
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::telemetry;
use forward::{edit_headers, fallback_host, forward_headers, ip_header_value, Assertion};

pub mod failure;
pub mod forward;

/// The most header bytes (names and values) a request may carry; more is 431.
/// Generous for browsers with many cookies, far below what would hurt.
const MAX_HEADER_BYTES: usize = 32 * 1024;

fn header_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum()
}

/// An HTTP/1.1 request without `Host` is refused, as RFC 9112 §3.2 asks
/// of a server. Pingora would forward it without one, and the upstream
/// refuse it, most in HTML; the gate answers in JSON instead. (Pingora
/// itself refuses a request with two; HTTP/1.0 may leave it out: see
/// [`fallback_host`].)
fn missing_host(header: &RequestHeader) -> Option<Reply> {
    (header.version == http::Version::HTTP_11 && !header.headers.contains_key(http::header::HOST))
        .then(|| Reply::failure(400, "The request has no Host header."))
}

/// Whether access log lines are written (fixed once logging starts).
fn access_log_on() -> bool {
    log::log_enabled!(target: "access", log::Level::Info)
}

/// The gate as a Pingora proxy.
pub struct PublicProxy {
    app: Arc<App>,
}

impl PublicProxy {
    pub fn new(app: Arc<App>) -> PublicProxy {
        PublicProxy { app }
    }
}

/// What `request_filter` decided for a request.
enum Step {
    /// Serve one of the gate's own routes.
    Own(routes::Route),
    /// Forward upstream as this caller.
    Forward(Identity),
    /// Answer locally with this refusal.
    Refuse(Reply),
    /// A CORS preflight: 200 with no content (every `OPTIONS`, as Tachi).
    Preflight,
}

/// Per-request state, for forwarding and for the access log.
pub struct Ctx {
    /// Who the caller of a forwarded request is.
    identity: Identity,
    /// When the request began; taken only for the access log, its only
    /// reader (a clock read per request is not free).
    start: Option<Instant>,
    /// The route class, for metrics and logs.
    class: &'static str,
    /// The path as logged (a key in a path is never logged).
    logged_path: Option<String>,
    upstream: Option<SocketAddr>,
    upstream_sent: Option<Instant>,
    /// When the first piece of a forwarded body arrived.
    body_started: Option<Instant>,
    /// The peer's address, which `X-Forwarded-For` upstream ends with.
    peer: Option<IpAddr>,
}

impl Ctx {
    /// The request's path as logs may show it (a key in a path is never logged).
    fn path_to_log<'a>(&'a self, req: &'a RequestHeader) -> std::borrow::Cow<'a, str> {
        match &self.logged_path {
            Some(path) => path.into(),
            None => crate::http::path::redact_secrets(req.uri.path()),
        }
    }
}

impl PublicProxy {
    /// What to do with a request, from its header alone: refuse it, serve one
    /// of the gate's own routes, or forward it as some caller.
    async fn decide(&self, header: &RequestHeader, ip: Option<IpAddr>, ctx: &mut Ctx) -> Step {
        // Failed credentials are counted after they fail: good ones are
        // served whatever their address's count (see `limits`).
        if header.method == Method::OPTIONS && self.cors().enabled() {
            return Step::Preflight;
        }
        let limits = &self.app.limits;
        if header_bytes(&header.headers) > MAX_HEADER_BYTES {
            return Step::Refuse(Reply::headers_too_large());
        }
        if let Some(reply) = missing_host(header) {
            return Step::Refuse(reply);
        }
        let path = match crate::http::path::canonical(header.uri.path()) {
            Ok(path) => path,
            Err(why) => return Step::Refuse(Reply::failure(400, why.describe())),
        };
        if let Some(route) = routes::own_route(&path) {
            ctx.class = route.class();
            ctx.logged_path = route.redacted_path();
            if route.is_rate_limited() {
                if let Err(reply) = limits.oauth_request(ip) {
                    return Step::Refuse(reply);
                }
            }
            return Step::Own(route);
        }
        match self
            .app
            .auth()
            .check(header.method.as_str(), &path, &header.headers)
            .await
        {
            Ok(identity) => Step::Forward(identity),
            Err(rejection) => {
                let over_limit = (rejection == Rejection::UnknownKey)
                    .then(|| limits.failure(ip))
                    .flatten();
                Step::Refuse(over_limit.unwrap_or_else(|| shapes::reply(&rejection, &path)))
            }
        }
    }

    fn cors(&self) -> Cors<'_> {
        Cors {
            origins: &self.app.config.cors_origins,
        }
    }

    /// The CORS headers for an answer to this request.
    fn cors_headers(&self, session: &Session) -> Vec<(&'static str, String)> {
        let origin = session
            .req_header()
            .headers
            .get(http::header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        self.cors().headers(origin)
    }

    /// `reply` with the CORS headers every answer the gate gives carries.
    fn with_cors(&self, session: &Session, mut reply: Reply) -> Reply {
        reply.headers.extend(self.cors_headers(session));
        reply
    }

    async fn serve_own(&self, session: &mut Session, route: routes::Route) -> Reply {
        let header = session.req_header();
        if !route.allows(&header.method) {
            return Reply::method_not_allowed(route.allowed());
        }
        // HEAD is answered as GET is; `write_body` leaves out the content.
        let method = match &header.method {
            &Method::HEAD => Method::GET,
            other => other.clone(),
        };
        let query = header.uri.query().map(str::to_string);
        let authority = header.uri.authority().map(|a| a.to_string());
        let headers = header.headers.clone();
        let body = match read_body(session).await {
            Ok(b) => b,
            Err(e) => return e.reply(),
        };
        let req = ApiRequest {
            method,
            query,
            headers,
            body,
            tls: is_tls(session),
            authority,
            caller: Caller::Guest,
        };
        routes::serve(&self.app, &route, req).await
    }
}

#[async_trait]
impl ProxyHttp for PublicProxy {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds a response compression
    /// module at level 0, which compresses nothing yet is built, called on
    /// every request and response phase, and dropped: work on every request
    /// that buys nothing. The gate passes bodies
    /// through as the upstream encoded them.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            identity: Identity::Guest,
            start: access_log_on().then(Instant::now),
            class: "gated",
            logged_path: None,
            upstream: None,
            upstream_sent: None,
            body_started: None,
            peer: None,
        }
    }

    /// Every request's future is allocated and moved into place whole, at
    /// the size of its largest state, so the paths a forwarded request does
    /// not take (serving an own route, writing a local answer) are boxed
    /// where they are awaited: unboxed, they made this future several
    /// times larger.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.peer = client_ip(session);
        let headers = &session.req_header().headers;
        let ip = forwarded::client_address(ctx.peer, headers, &self.app.config.trusted_proxies);
        let limits = &self.app.limits;
        let step = self.decide(session.req_header(), ip, ctx).await;
        let reply = match step {
            Step::Forward(identity) => {
                ctx.identity = identity;
                return Ok(false);
            }
            Step::Own(route) => {
                let reply = Box::pin(self.serve_own(session, route)).await;
                match reply.failed_auth {
                    true => limits.failure(ip).unwrap_or(reply),
                    false => reply,
                }
            }
            Step::Refuse(reply) => {
                if reply.status == 431 {
                    session.set_keepalive(None);
                }
                reply
            }
            Step::Preflight => {
                let headers = self.cors_headers(session);
                Box::pin(write_body(session, 200, "", Vec::new(), &headers)).await?;
                return Ok(true);
            }
        };
        let reply = self.with_cors(session, reply);
        Box::pin(write_reply(session, &reply)).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(addr) = self.app.upstreams.next() else {
            return Err(Error::explain(
                ErrorType::ConnectNoRoute,
                "every upstream failed its health check",
            ));
        };
        ctx.upstream = Some(addr);
        let upstream = &self.app.config.upstream;
        // A plain-HTTP peer never uses its SNI: skip formatting one per request.
        let sni = match (&upstream.sni, upstream.tls) {
            (_, false) => String::new(),
            (Some(name), true) => name.clone(),
            (None, true) => addr.ip().to_string(),
        };
        let mut peer = HttpPeer::new(addr, upstream.tls, sni);
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.total_connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        // Pingora sets no read deadline on an HTTP/2 client's body: one that
        // never comes leaves the upstream waiting until its own read timeout.
        // Bound that wait by the body's deadline while the body is still to
        // come, and blame the client when it runs out (`fail_to_proxy`).
        if session.is_http2() && !session.is_body_done() {
            peer.options.read_timeout =
                Some(upstream.read_timeout.min(self.app.config.body_timeout));
        }
        Ok(Box::new(peer))
    }

    /// A failed connect sent nothing upstream, so trying the next upstream is
    /// safe for every method (Pingora retries none by default).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        e.set_retry(true);
        e
    }

    /// Cuts off a forwarded body that arrives too slowly in total: Pingora
    /// bounds only each read (60 s), so a client trickling a byte at a time
    /// would hold the connection, and an upstream one, for ever. The clock
    /// starts at the body's first piece (so connecting upstream, retries and
    /// `Expect: 100-continue` do not count), and each piece is checked as it
    /// arrives.
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if body.as_ref().is_none_or(|b| b.is_empty()) {
            return Ok(());
        }
        let started = *ctx.body_started.get_or_insert_with(Instant::now);
        if started.elapsed() > self.app.config.body_timeout {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the request body took longer than server.body_timeout_ms",
            )
            .into_down());
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let ip = forwarded::forwarded_for(
            ctx.peer,
            &session.req_header().headers,
            &self.app.config.trusted_proxies,
            ip_header_value,
        );
        let proto = if is_tls(session) { "https" } else { "http" };
        let hide = self.app.config.auth.hide_credentials;
        let host = fallback_host(
            session.req_header().version,
            upstream,
            ctx.upstream,
            &self.app.config.upstream,
        );
        let assertion = Assertion {
            header: &self.app.config.identity.header,
            value: match (&self.app.assertions, &ctx.identity) {
                (Some(signer), Identity::Key(record)) => Some(
                    signer
                        .for_key(record)
                        .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()))?,
                ),
                _ => None,
            },
        };
        edit_headers(upstream, |headers| {
            if let Some(host) = host {
                headers.insert(http::header::HOST, host);
            }
            forward_headers(headers, ip, proto, &ctx.identity, hide, assertion)
        })?
        .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()).into_in())?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            telemetry::upstream_answered(sent.elapsed().as_secs_f64());
        }
        // Tachi allows any origin; narrowed origins hold for its answers too.
        let cors = self.cors();
        if cors.enabled() && !cors.is_any_origin() {
            for name in cors::HEADER_NAMES {
                response.remove_header(name);
            }
            for (name, value) in self.cors_headers(session) {
                response.append_header(name, value)?;
            }
        }
        Ok(())
    }

    /// What Pingora's own error lines say about a request: never the query
    /// string or a key in the path.
    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        let req = session.req_header();
        let path = ctx.path_to_log(req);
        format!("{} {path}", req.method)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        telemetry::request_answered(ctx.class, status);
        if !access_log_on() {
            return;
        }
        let req = session.req_header();
        let (user, client) = match &ctx.identity {
            Identity::Key(k) => (
                k.user_id.to_string(),
                k.from_client.as_deref().unwrap_or("-"),
            ),
            Identity::Session(user) => (user.to_string(), "-"),
            Identity::Guest | Identity::ForeignKey => ("-".to_string(), "-"),
        };
        log::info!(
            target: "access",
            "{} {} {status} class={} user={user} client={client} upstream={} ms={:.1}",
            req.method,
            ctx.path_to_log(req),
            ctx.class,
            ctx.upstream.map_or_else(|| "-".to_string(), |a| a.to_string()),
            ctx.start.map_or(0.0, |s| s.elapsed().as_secs_f64() * 1000.0),
        );
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let reply = failure::reply_for(e.etype(), e.esource(), session.is_body_done());
        if reply
            .as_ref()
            .is_some_and(|r| matches!(r.status, 502 | 504))
        {
            telemetry::UPSTREAM_ERRORS.inc();
        }
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
                let reply = self.with_cors(session, reply);
                // The connection is closed after this answer: say so in it.
                session.set_keepalive(None);
                if let Err(err) = write_reply(session, &reply).await {
                    log::debug!("could not send the error answer: {err}");
                }
                reply.status
            }
            _ => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::missing_host;
    use crate::proxy::forward::tests::request;

    #[test]
    fn host_is_required_in_http_1_1_only() {
        use http::Version;
        let refused = |v, hosts: &[&str]| {
            missing_host(&request(v, b"/x", hosts))
                .map(|r| (r.status, r.envelope["description"].clone()))
        };
        let (status, description) = refused(Version::HTTP_11, &[]).unwrap();
        assert_eq!(status, 400);
        assert_eq!(description, "The request has no Host header.");
        assert_eq!(refused(Version::HTTP_11, &["t"]), None);
        // HTTP/1.0 may leave it out; HTTP/2 names its host in `:authority`.
        assert_eq!(refused(Version::HTTP_10, &[]), None);
        assert_eq!(refused(Version::HTTP_2, &[]), None);
    }
}
