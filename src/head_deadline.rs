//! A deadline on receiving each HTTP/1 request head (slowloris protection).
//!
//! Pingora bounds every single read of a request head (by the 60 s keep-alive
//! timeout) but not the head as a whole, so a client that sends one byte a
//! minute keeps its connection and its task for ever. [`HeadDeadline`] wraps
//! the proxy application: before Pingora sees a request, the head is read
//! here, and it must be complete within `limit` of its first byte. The bytes
//! read are then handed to Pingora's own parser as the session's prefix
//! (the hook Pingora uses for pipelined requests), so Pingora parses them as
//! if it had read them itself, body bytes included.
//!
//! The wait for a request's first byte stays governed by the keep-alive
//! timeout, exactly as before. HTTP/2 sessions pass straight through: their
//! framing is the h2 crate's business.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::H2Options;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::reply::Reply;
use crate::telemetry;

/// Pingora's own cap on a request head; past it Pingora answers 400, so
/// reading further here would only waste memory.
const MAX_HEAD_BYTES: usize = 1_048_575;

/// Pingora's cap on the number of header lines.
const MAX_HEADERS: usize = 256;

/// How long the 408 answer may take to write before the connection is simply dropped.
const ANSWER_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// The proxy application `A`, with a deadline on each HTTP/1 request head.
pub struct HeadDeadline<A> {
    inner: Arc<A>,
    limit: Duration,
}

impl<A> HeadDeadline<A> {
    pub fn new(inner: A, limit: Duration) -> HeadDeadline<A> {
        HeadDeadline {
            inner: Arc::new(inner),
            limit,
        }
    }
}

/// The per-connection settings a fresh HTTP/1 session must inherit from the
/// one it replaces (keep-alive, reuse budget, context carried between requests).
struct Carried {
    keepalive: Option<u64>,
    reuses_remaining: Option<u32>,
    user_context: Option<Box<dyn std::any::Any + Send + Sync>>,
    pipelining: bool,
    /// How long to wait for the first byte of the request.
    idle: Option<Duration>,
}

impl Carried {
    fn take(session: &mut ServerSession) -> Carried {
        let keepalive = session.get_keepalive();
        Carried {
            keepalive,
            reuses_remaining: session.get_keepalive_reuses_remaining(),
            user_context: session.take_connection_user_context(),
            pipelining: session.pipelining_enabled(),
            // Pingora's meaning of the keep-alive setting: Some(0) waits for
            // ever, Some(n) n seconds, None (keep-alive off) the read timeout.
            idle: match keepalive {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => session.get_read_timeout(),
            },
        }
    }

    fn restore(self, session: &mut ServerSession) {
        session.set_keepalive(self.keepalive);
        session.set_keepalive_reuses_remaining(self.reuses_remaining);
        session.set_connection_user_context(self.user_context);
        session.set_pipelining_enabled(self.pipelining);
    }
}

#[async_trait]
impl<A> HttpServerApp for HeadDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if session.as_http1().is_none() {
            return self.inner.process_new_http(session, shutdown).await;
        }
        // Sessions reach here without a prefix: the gate never turns
        // pipelining on, so Pingora closes rather than carry one over.
        let carried = Carried::take(&mut session);
        let ServerSession::H1(h1) = session else {
            return None; // ruled out just above
        };
        let mut stream = h1.into_inner();
        let head = receive_head(&mut stream, carried.idle, self.limit, shutdown).await?;
        let mut session = ServerSession::new_http1(stream);
        carried.restore(&mut session);
        session.set_pipelined_prefix(head);
        self.inner.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }
}

/// Reads one request head from `stream`: waits up to `idle` for its first
/// byte, then up to `limit` for the rest. Returns the bytes read (the head and
/// whatever followed it in the same reads), or `None` when the connection
/// should close: the client went away or stayed idle, the service is shutting
/// down while the client is idle, or the head was too slow (answered 408).
async fn receive_head(
    stream: &mut Stream,
    idle: Option<Duration>,
    limit: Duration,
    shutdown: &ShutdownWatch,
) -> Option<BytesMut> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut shutdown = shutdown.clone();
    let first = async {
        match idle {
            Some(idle) => timeout(idle, stream.read_buf(&mut buf)).await.ok(),
            None => Some(stream.read_buf(&mut buf).await),
        }
    };
    let read = tokio::select! {
        read = first => read,
        // An idle connection is dropped when the service starts shutting down.
        Ok(()) = shutdown.changed() => None,
    };
    if !matches!(read, Some(Ok(n)) if n > 0) {
        return None;
    }
    let deadline = Instant::now() + limit;
    while !head_is_complete(&buf) && buf.len() <= MAX_HEAD_BYTES {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return None,
            Err(_) => {
                answer_too_slow(stream).await;
                return None;
            }
        }
    }
    Some(buf)
}

/// Whether `buf` holds a whole request head, or enough that Pingora's
/// parser will decide without reading more (it answers a malformed head 400).
fn head_is_complete(buf: &[u8]) -> bool {
    // Like the parser, skip empty lines before the request line.
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    // Cheap test first: every complete head ends in an empty line.
    let ends_in_empty_line = rest
        .windows(2)
        .any(|w| w == b"\n\n" || (w[0] == b'\n' && w[1] == b'\r'));
    if !ends_in_empty_line {
        return false;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    !matches!(
        httparse::Request::new(&mut headers).parse(buf),
        Ok(httparse::Status::Partial)
    )
}

/// Answers 408 on a connection whose request head did not arrive in time.
/// The answer is written by hand because no Pingora session exists yet.
async fn answer_too_slow(stream: &mut Stream) {
    telemetry::header_timeout();
    let body = Reply::failure(408, "The request header was not received in time.").body_bytes();
    let mut answer = format!(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let write = async {
        stream.write_all(&answer).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    // A client that does not read its answer loses it; the connection closes either way.
    let _ = timeout(ANSWER_WRITE_LIMIT, write).await;
}

#[cfg(test)]
mod tests {
    use super::head_is_complete;

    #[test]
    fn a_head_is_complete_at_its_empty_line() {
        assert!(head_is_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(head_is_complete(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(head_is_complete(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
        ));
        assert!(!head_is_complete(b""));
        assert!(!head_is_complete(b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!head_is_complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r"));
    }

    #[test]
    fn leading_empty_lines_do_not_end_a_head() {
        // The parser skips them, so they must not end the deadline either.
        assert!(!head_is_complete(b"\r\n\r\n\r\n"));
        assert!(!head_is_complete(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a"));
        assert!(head_is_complete(b"\r\nGET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn a_malformed_head_is_handed_on_once_it_ends() {
        // Pingora answers these 400; the deadline has done its work.
        assert!(head_is_complete(b"GET /a b c HTTP/1.1\r\n\r\n"));
        assert!(head_is_complete(b"\x00\x01\x02\n\n"));
        assert!(!head_is_complete(b"GET /a b c HTTP/1.1\r\nX: y"));
    }
}
