//! The Pingora glue: routes a request to the gate's own handlers or through
//! the gate to the upstream. Decisions live elsewhere; this file only moves
//! bytes and headers between Pingora and them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method};
use pingora::http::authority::raw_target_authority;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::app::{ApiRequest, App};
use crate::body::{BodyError, MAX_BODY_BYTES};
use crate::config::UpstreamConfig;
use crate::gate::{self, Identity, Rejection};
use crate::reply::{Reply, JSON_CONTENT_TYPE};
use crate::routes;
use crate::telemetry;

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

/// The `Host` to send upstream for a request that names no host at all (an
/// HTTP/1.0 request without `Host`, its target in origin form). Pingora
/// forwards those as HTTP/1.1 without `Host`, which an upstream must refuse.
/// Like a reverse proxy's usual default, the value is the upstream's own
/// name: its TLS name if it has one (as for session lookups), else the
/// address connected to, `upstream`.
fn fallback_host(
    downstream: http::Version,
    req: &RequestHeader,
    upstream: Option<SocketAddr>,
    config: &UpstreamConfig,
) -> Option<HeaderValue> {
    // HTTP/1.1 requests have a Host (see `missing_host`), and Pingora gives
    // HTTP/2 ones theirs from `:authority`.
    if downstream != http::Version::HTTP_10
        || req.headers.contains_key(http::header::HOST)
        || req.uri.authority().is_some()
        || raw_target_authority(req.raw_path()).authority().is_some()
    {
        return None;
    }
    let name = match (config.tls_name(), upstream) {
        (Some(name), _) => name.to_string(),
        (None, Some(addr)) => addr.to_string(),
        (None, None) => return None,
    };
    HeaderValue::try_from(name).ok()
}

/// The client's IP address, when it came over TCP.
pub(crate) fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Whether the client reached the gate over TLS.
pub(crate) fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Whether access log lines are written (fixed once logging starts).
fn access_log_on() -> bool {
    log::log_enabled!(target: "access", log::Level::Info)
}

/// How long a client may take to send the body of a request to an own route.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The gate as a Pingora proxy.
pub struct GateProxy {
    app: Arc<App>,
}

impl GateProxy {
    pub fn new(app: Arc<App>) -> GateProxy {
        GateProxy { app }
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
}

impl Ctx {
    /// The request's path as logs may show it (a key in a path is never logged).
    fn path_to_log<'a>(&'a self, req: &'a RequestHeader) -> &'a str {
        self.logged_path.as_deref().unwrap_or(req.uri.path())
    }
}

/// Writes a reply with Content-Type and Content-Length, so the connection can
/// stay open when the body was read.
pub async fn write_reply(session: &mut Session, reply: &Reply) -> Result<()> {
    let body = reply.body_bytes();
    write_body(
        session,
        reply.status,
        JSON_CONTENT_TYPE,
        body,
        &reply.headers,
    )
    .await
}

/// Writes a complete response with Content-Type and Content-Length; to a
/// HEAD request, the same header with no content (Pingora leaves HTTP/1
/// bodies out by itself, HTTP/2 ones not).
pub async fn write_body(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&'static str, String)],
) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(3 + headers.len()))?;
    header.insert_header("Content-Type", content_type)?;
    header.insert_header("Content-Length", body.len().to_string())?;
    for (name, value) in headers {
        header.append_header(*name, value.as_str())?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    let content = if session.req_header().method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    session.write_response_body(Some(content), true).await
}

/// Reads the body of a request to an own route, within the size and time
/// limits. On failure the connection will close: whatever is left of the
/// body would otherwise be read as the next request.
pub(crate) async fn read_body(session: &mut Session) -> std::result::Result<Bytes, BodyError> {
    let result = read_body_within_limits(session).await;
    if result.is_err() {
        session.set_keepalive(None);
    }
    result
}

async fn read_body_within_limits(session: &mut Session) -> std::result::Result<Bytes, BodyError> {
    let req = session.req_header();
    if let Some(len) = req.headers.get(http::header::CONTENT_LENGTH) {
        let len: usize = len
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or(BodyError::BadContentLength)?;
        if len > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
    }
    let expects_continue = req
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await
            .map_err(|_| BodyError::Unreadable)?;
    }
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(BodyError::TooLarge);
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(buf.freeze()),
                Err(_) => return Err(BodyError::Unreadable),
            }
        }
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

impl GateProxy {
    /// What to do with a request, from its header alone: refuse it, serve one
    /// of the gate's own routes, or forward it as some caller.
    async fn decide(&self, header: &RequestHeader, ip: Option<IpAddr>, ctx: &mut Ctx) -> Step {
        let limits = &self.app.limits;
        if header_bytes(&header.headers) > MAX_HEADER_BYTES {
            return Step::Refuse(Reply::headers_too_large());
        }
        if let Some(reply) = missing_host(header) {
            return Step::Refuse(reply);
        }
        let Ok(path) = gate::path::canonical(header.uri.path()) else {
            return Step::Refuse(Reply::failure(400, "The path has '.' or '..' segments."));
        };
        if let Some(route) = routes::own_route(&path) {
            ctx.class = route.class();
            ctx.logged_path = route.redacted_path();
            if route.is_rate_limited() {
                if let Err(reply) = limits
                    .failures_exceeded(ip)
                    .and_then(|_| limits.oauth_request(ip))
                {
                    return Step::Refuse(reply);
                }
            }
            return Step::Own(route);
        }
        if header.headers.contains_key(http::header::AUTHORIZATION) {
            if let Err(reply) = limits.failures_exceeded(ip) {
                return Step::Refuse(reply);
            }
        }
        match gate::check(&self.app, header.method.as_str(), &path, &header.headers).await {
            Ok(identity) => Step::Forward(identity),
            Err(rejection) => {
                if rejection == Rejection::UnknownKey {
                    limits.failure(ip);
                }
                Step::Refuse(rejection.reply())
            }
        }
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
        };
        routes::serve(&self.app, &route, &req).await
    }
}

#[async_trait]
impl ProxyHttp for GateProxy {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds a response compression
    /// module at level 0, which compresses nothing yet is built, called on
    /// every request and response phase, and dropped: about 420 instructions
    /// a request (callgrind) that buy nothing. The gate passes bodies
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
        }
    }

    /// Every request's future is allocated and moved into place whole, at
    /// the size of its largest state, so the paths a forwarded request does
    /// not take (serving an own route, writing a local answer) are boxed
    /// where they are awaited: unboxed, they made this future 1,920 bytes.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let ip = client_ip(session);
        let limits = &self.app.limits;
        let step = self.decide(session.req_header(), ip, ctx).await;
        let reply = match step {
            Step::Forward(identity) => {
                ctx.identity = identity;
                return Ok(false);
            }
            Step::Own(route) => {
                let reply = Box::pin(self.serve_own(session, route)).await;
                if reply.failed_auth {
                    limits.failure(ip);
                }
                reply
            }
            Step::Refuse(reply) => {
                if reply.status == 431 {
                    session.set_keepalive(None);
                }
                reply
            }
        };
        Box::pin(write_reply(session, &reply)).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
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
        let ip = client_ip(session).map(ip_header_value);
        let proto = if is_tls(session) { "https" } else { "http" };
        let hide = self.app.config.gate.hide_credentials;
        let host = fallback_host(
            session.req_header().version,
            upstream,
            ctx.upstream,
            &self.app.config.upstream,
        );
        edit_headers(upstream, |headers| {
            if let Some(host) = host {
                headers.insert(http::header::HOST, host);
            }
            gate::forward_headers(headers, ip, proto, &ctx.identity, hide)
        })?
        .map_err(|e| Error::explain(ErrorType::InternalError, e.to_string()).into_in())?;
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            telemetry::upstream_answered(sent.elapsed().as_secs_f64());
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
        let reply = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) if *code >= 400 => {
                Some(Reply::failure(*code, "The request failed."))
            }
            (ErrorType::ReadTimedout, ErrorSource::Upstream) => Some(Reply::failure(
                504,
                "The Tachi server did not answer in time.",
            )),
            (
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => None,
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => Some(BodyError::Timeout.reply()),
            (_, ErrorSource::Downstream) => Some(Reply::failure(400, "Bad request.")),
            // The upstream failed, or none could be reached.
            _ => Some(Reply::upstream_unavailable()),
        };
        if reply
            .as_ref()
            .is_some_and(|r| matches!(r.status, 502 | 504))
        {
            telemetry::UPSTREAM_ERRORS.inc();
        }
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
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

/// Runs `edit` on the header map of `req` itself.
///
/// `RequestHeader` keeps a second map with each header name as the client
/// spelled it, and offers no mutable access to its `HeaderMap`: each
/// `insert_header` parses and copies the name, then inserts into both maps,
/// growing each in turn. That was about 1,650 instructions a header, six
/// headers a request with a key. Here the parts are taken out (a move, not a
/// copy), edited directly with static names and room reserved once, and put
/// back. The cost: without the case map, Pingora writes header names to the
/// upstream in lower case (a few, such as `Host`, in title case). Header
/// names are case-insensitive (RFC 9110 §5.1), and HTTP/2 sends them in
/// lower case anyway. A request-target the URI does not hold byte for byte
/// (absolute-form, or not UTF-8) and the HTTP/2 end-of-stream flag do not
/// survive the round trip on their own, so they are put back.
fn edit_headers<T>(
    req: &mut RequestHeader,
    edit: impl FnOnce(&mut http::HeaderMap) -> T,
) -> Result<T> {
    let uri_target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str().as_bytes())
        .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    let target =
        (req.raw_path() != uri_target || !req.raw_path_is_utf8()).then(|| req.raw_path().to_vec());
    let end_stream = req.send_end_stream();
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(req, placeholder));
    let out = edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(target) = target {
        req.set_raw_path(&target)?;
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    Ok(out)
}

/// The client address as an `X-Forwarded-For` value. IPv4 is put together
/// from its octets: going through `Display` (with its padding support) and a
/// `String` cost about 2,600 instructions a request, more than inserting the
/// header.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        // An IPv6 address is always a valid header value.
        return HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static(""));
    };
    let mut text = [0u8; 15];
    let mut len = 0;
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let part = digits.format(octet).as_bytes();
        text[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    // Digits and dots only.
    HeaderValue::from_bytes(&text[..len]).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::{edit_headers, fallback_host, ip_header_value, missing_host};
    use crate::config::UpstreamConfig;
    use pingora::http::RequestHeader;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    fn request(version: http::Version, target: &[u8], hosts: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target, None).unwrap();
        req.set_version(version);
        for host in hosts {
            req.append_header("Host", *host).unwrap();
        }
        req
    }

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

    #[test]
    fn a_request_naming_no_host_is_given_the_upstreams() {
        // An upstream over TLS, known by `sni`.
        let tls = |sni: Option<&str>| UpstreamConfig {
            addrs: vec![],
            tls: true,
            sni: sni.map(str::to_string),
            ca_file: None,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            health_check: None,
        };
        let up: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let v10 = http::Version::HTTP_10;
        let bare = request(v10, b"/x", &[]);
        assert_eq!(
            fallback_host(v10, &bare, Some(up), &tls(None)).unwrap(),
            "10.0.0.7:8080"
        );
        assert_eq!(
            fallback_host(v10, &bare, Some(up), &tls(Some("tachi.internal"))).unwrap(),
            "tachi.internal"
        );
        assert_eq!(fallback_host(v10, &bare, None, &tls(None)), None);
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        for sni in [None, Some("::1"), Some("10.0.0.7")] {
            assert_eq!(
                fallback_host(v10, &bare, Some(v6), &tls(sni)).unwrap(),
                "[::1]:8443"
            );
        }
        // A request that names its host keeps it, in a header or in its target.
        let named = request(v10, b"/x", &["t"]);
        assert_eq!(fallback_host(v10, &named, Some(up), &tls(None)), None);
        let absolute = request(v10, b"http://b.example/x", &[]);
        assert_eq!(fallback_host(v10, &absolute, Some(up), &tls(None)), None);
        // Only HTTP/1.0 comes without a host.
        for v in [http::Version::HTTP_11, http::Version::HTTP_2] {
            assert_eq!(fallback_host(v, &bare, Some(up), &tls(None)), None, "{v:?}");
        }
    }

    #[test]
    fn editing_headers_keeps_the_rest_of_the_request() {
        let targets: [&[u8]; 5] = [
            b"/a/b?c=d&e",
            b"/",
            b"*",
            b"http://tachi.example/x?y=1",
            b"/caf\xe9?q=\xff",
        ];
        for target in targets {
            let mut req = RequestHeader::build("POST", target, None).unwrap();
            req.insert_header("Host", "tachi").unwrap();
            req.insert_header("X-Drop", "1").unwrap();
            req.set_version(http::Version::HTTP_10);
            let (raw, utf8, uri) = (
                req.raw_path().to_vec(),
                req.raw_path_is_utf8(),
                req.uri.clone(),
            );
            let removed = edit_headers(&mut req, |h| {
                h.insert("x-added", http::HeaderValue::from_static("2"));
                h.remove("x-drop")
            })
            .unwrap();
            assert_eq!(removed.unwrap(), "1");
            assert_eq!(req.raw_path(), raw, "{}", String::from_utf8_lossy(target));
            assert_eq!(req.raw_path_is_utf8(), utf8);
            assert_eq!(req.uri, uri);
            assert_eq!(req.method, http::Method::POST);
            assert_eq!(req.version, http::Version::HTTP_10);
            assert_eq!(req.headers.get("host").unwrap(), "tachi");
            assert_eq!(req.headers.get("x-added").unwrap(), "2");
            assert_eq!(req.headers.len(), 2);
        }
    }

    #[test]
    fn editing_headers_keeps_a_uri_with_an_authority() {
        // As HTTP/2 requests carry it.
        let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
        let uri: http::Uri = "https://tachi.example:8443/a?b=c".parse().unwrap();
        req.set_uri(uri.clone());
        edit_headers(&mut req, |h| {
            h.insert("x-added", http::HeaderValue::from_static("1"))
        })
        .unwrap();
        assert_eq!(req.uri, uri);
        assert_eq!(req.raw_path(), b"/a?b=c");
    }

    #[test]
    fn editing_headers_keeps_the_http2_end_of_stream_flag() {
        for flag in [true, false] {
            let mut req = RequestHeader::build_no_case("GET", b"/", None).unwrap();
            req.set_version(http::Version::HTTP_2);
            req.set_send_end_stream(flag);
            edit_headers(&mut req, |_| ()).unwrap();
            assert_eq!(req.send_end_stream(), Some(flag));
        }
    }

    #[test]
    fn ipv4_header_values_match_display() {
        for a in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(a, 0, 7, 255),
                Ipv4Addr::new(10, a, 99, 100),
                Ipv4Addr::new(255, 9, a, 1),
                Ipv4Addr::new(1, 2, 3, a),
            ] {
                assert_eq!(ip_header_value(IpAddr::V4(ip)), ip.to_string().as_str());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_header_value(v6), "2001:db8::1");
    }
}
