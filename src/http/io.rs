//! Reading request bodies and writing the gate's own answers over a Pingora
//! session: shared by the public listeners and the admin listener, so an
//! answer is written the same way wherever it comes from.

use std::net::IpAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use super::body::{BodyError, MAX_BODY_BYTES};
use super::reply::Reply;

/// The peer's IP address, when it came over TCP (an IPv4-mapped IPv6
/// address as IPv4). Behind trusted proxies the client is someone else:
/// see [`super::forwarded`].
pub fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip().to_canonical())
}

/// Whether the client reached the gate over TLS.
pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// How long a client may take to send the body of a request to an own route.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a reply with Content-Type and Content-Length, so the connection can
/// stay open when the body was read.
pub async fn write_reply(session: &mut Session, reply: &Reply) -> Result<()> {
    let body = reply.body_bytes();
    write_body(
        session,
        reply.status,
        reply.content_type(),
        body,
        &reply.headers,
    )
    .await
}

/// Writes a complete response with Content-Type (when it has content) and
/// Content-Length; to a
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
    if !body.is_empty() {
        header.insert_header("Content-Type", content_type)?;
    }
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
pub async fn read_body(session: &mut Session) -> std::result::Result<Bytes, BodyError> {
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
