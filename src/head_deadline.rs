//! A deadline on receiving each HTTP/1 request head (slowloris protection).
//!
//! Pingora bounds every single read of a request head (by the 60 s keep-alive
//! timeout) but not the head as a whole, so a client that sends one byte a
//! minute keeps its connection and its task for ever. [`HeadDeadline`] takes
//! over the connection loop Pingora runs for HTTP/1: each request head is
//! read here and must be complete within `limit` of its first byte. The bytes
//! read are then handed to the proxy's session as its prefix (the hook
//! Pingora uses for pipelined requests), so Pingora's parser reads them as if
//! it had read them itself, body bytes included, and nothing is read twice.
//!
//! The wait for a request's first byte is the keep-alive timeout, as in
//! Pingora. HTTP/2 connections (and h2c or custom protocols, which the gate
//! does not turn on) are handed to the proxy whole: their framing is the h2
//! crate's business.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};

use crate::reply::Reply;
use crate::telemetry;

/// How long a connection may wait for a request's first byte: Pingora's
/// keep-alive default, which it also applies to a new connection.
const KEEPALIVE_SECS: u64 = 60;

/// Pingora's own cap on a request head; past it Pingora answers 400, so
/// reading further here would only waste memory.
const MAX_HEAD_BYTES: usize = 1_048_575;

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

#[async_trait]
impl<A> ServerApp for HeadDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// Pingora's HTTP/1 keep-alive loop (as in its `ServerApp` for HTTP
    /// applications), with each head read under the deadline first.
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        if options.is_some_and(|o| o.h2c || o.force_custom)
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2 | ALPN::Custom(_))
            )
        {
            return self.inner.process_new(stream, shutdown).await;
        }
        let idle = Duration::from_secs(KEEPALIVE_SECS);
        let mut carried: Option<HttpPersistentSettings> = None;
        loop {
            let head = receive_head(&mut stream, idle, self.limit, shutdown).await?;
            let mut session = ServerSession::new_http1(stream);
            match carried {
                // The gate never turns pipelining on, so what is carried over
                // holds no prefix of its own.
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    let closing = *shutdown.borrow();
                    session.set_keepalive((!closing).then_some(KEEPALIVE_SECS));
                    session.set_keepalive_reuses_remaining(
                        options.and_then(|o| o.keepalive_request_limit),
                    );
                }
            }
            session.set_pipelined_prefix(head);
            let reused = self.inner.process_new_http(session, shutdown).await?;
            (stream, carried) = reused.consume();
        }
    }

    async fn cleanup(&self) {
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
    idle: Duration,
    limit: Duration,
    shutdown: &ShutdownWatch,
) -> Option<BytesMut> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut shutdown = shutdown.clone();
    let read = tokio::select! {
        read = timeout(idle, stream.read_buf(&mut buf)) => read.ok(),
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
/// parser will decide without reading more: an empty line after the request
/// line ends the head whether or not what precedes it parses (a malformed
/// head is Pingora's to answer, with 400).
fn head_is_complete(buf: &[u8]) -> bool {
    // Like the parser, skip empty lines before the request line.
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    memchr::memchr_iter(b'\n', rest).any(|i| match rest.get(i + 1) {
        Some(b'\n') => true,
        Some(b'\r') => rest.get(i + 2) == Some(&b'\n'),
        _ => false,
    })
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
