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
//!
//! ## What this mirrors
//!
//! The loop below reproduces, for HTTP/1, the blanket
//! `impl<T: HttpServerApp> ServerApp for T` of pingora-core 0.9.1
//! (`pingora-core/src/apps/mod.rs`, its `process_new`): read a request,
//! hand the session to `process_new_http`, and go round again while the
//! session it gives back may be reused, carrying `HttpPersistentSettings`
//! across. Pingora is pinned to that exact version in Cargo.toml; on an
//! upgrade, diff that function against this one (docs/ARCHITECTURE.md,
//! "Upgrading Pingora").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant, Sleep};

use crate::http::reply::Reply;
use crate::listener::head_check::{self, HeaderLines};
use crate::listener::proxy_protocol::ProxyProtocol;
use crate::telemetry;

/// How long a connection may wait for a request's first byte: Pingora's
/// keep-alive default, which it also applies to a new connection.
pub(crate) const KEEPALIVE_SECS: u64 = 60;

/// Pingora's own cap on a request head; past it Pingora answers 400 without
/// a body, so the gate answers 431 itself rather than read further.
const MAX_HEAD_BYTES: usize = 1_048_575;

/// How long a connection that has not yet sent a request may still take to
/// send its first byte once shutdown has begun. Such a connection was
/// accepted while the gate was accepting, so its client is sending a request
/// in good faith: dropping it would reset that request (the listening socket
/// passes to the new process in an upgrade; this connection does not). Half
/// the second that the server keeps running tasks once shutdown begins
/// (`grace_period_seconds`), so that a request which then arrives promptly
/// is still answered within it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// How long the 408 answer may take to write before the connection is simply dropped.
const ANSWER_WRITE_LIMIT: Duration = Duration::from_secs(1);

/// The proxy application `A`, with a deadline on each HTTP/1 request head.
pub struct HeadDeadline<A> {
    inner: Arc<A>,
    limit: Duration,
    /// PROXY headers expected from trusted peers on plain connections.
    proxy_protocol: Option<ProxyProtocol>,
}

impl<A> HeadDeadline<A> {
    pub fn new(
        inner: A,
        limit: Duration,
        proxy_protocol: Option<ProxyProtocol>,
    ) -> HeadDeadline<A> {
        HeadDeadline {
            inner: Arc::new(inner),
            limit,
            proxy_protocol,
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
        // A TLS connection's PROXY header was read before its handshake.
        if let Some(proxy) = self
            .proxy_protocol
            .as_ref()
            .filter(|_| stream.get_ssl().is_none())
        {
            let fd = stream.id();
            if let Err(e) = proxy.accept(&mut *stream, fd).await {
                log::debug!("{e}");
                return None;
            }
        }
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
        let mut first = true;
        let timer = sleep(idle);
        let mut watch = shutdown.clone();
        let shutdown_begins = async move {
            // A dropped sender never signals: wait for the other arms.
            if watch.wait_for(|closing| *closing).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(timer, shutdown_begins);
        let mut waits = Waits {
            timer,
            shutdown: shutdown_begins,
            shutting_down: false,
        };
        loop {
            let (head, suspect) =
                receive_head(&mut stream, &mut waits, idle, self.limit, first).await?;
            first = false;
            if suspect {
                // Boxed: the trial parse is rare, and its future is large.
                if let Some(reply) = Box::pin(head_check::refusal(&head)).await {
                    telemetry::head_refused();
                    answer_and_close(&mut stream, &reply).await;
                    return None;
                }
            }
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

/// What a connection waits for besides its client, kept for the
/// connection's life rather than made afresh for each request. A fresh
/// `tokio::time::timeout` per request inserted a timer into the runtime's
/// timer wheel (under its lock) and removed it again, and the insertion
/// could write to the I/O driver's eventfd to wake it: on a busy keep-alive
/// connection, a system call per request. Moving a timer's deadline later is
/// an atomic store that leaves the wheel alone; the timer is re-filed only
/// when its old deadline comes. Likewise a fresh wait on the shutdown signal
/// registered and removed a waiter (two locks) per request; this one stays
/// registered.
struct Waits<'a, S> {
    timer: Pin<&'a mut Sleep>,
    /// Resolves once the service is shutting down.
    shutdown: Pin<&'a mut S>,
    /// Whether `shutdown` has resolved (it must not be polled again).
    shutting_down: bool,
}

/// Reads one request head from `stream`: waits up to `idle` for its first
/// byte, then up to `limit` for the rest. Returns the bytes read (the head and
/// whatever followed it in the same reads) and whether the head is suspect
/// ([`head_check`]), or `None` when the connection should close: the client
/// went away or stayed idle, the service is shutting down while the client is
/// idle (after [`FIRST_REQUEST_GRACE`] if it is a new connection, `first`),
/// or the head was too slow (answered 408) or too long (answered 431).
async fn receive_head<S: Future<Output = ()>>(
    stream: &mut Stream,
    waits: &mut Waits<'_, S>,
    idle: Duration,
    limit: Duration,
    first: bool,
) -> Option<(BytesMut, bool)> {
    let Waits {
        timer,
        shutdown,
        shutting_down,
    } = waits;
    let mut buf = BytesMut::with_capacity(4096);
    timer.as_mut().reset(Instant::now() + idle);
    let first_byte = stream.read_buf(&mut buf);
    tokio::pin!(first_byte);
    let read = tokio::select! {
        // Bytes already waiting are read first, even once shutdown has begun:
        // a request the client sent must not be dropped.
        biased;
        read = &mut first_byte => Some(read),
        () = timer.as_mut() => None,
        // An idle kept-alive connection is dropped when the service starts
        // shutting down; a new one gets a moment to send its request.
        () = shutdown.as_mut(), if !*shutting_down => {
            *shutting_down = true;
            if first {
                // The grace never outlasts the wait for the first byte.
                let until = (Instant::now() + FIRST_REQUEST_GRACE).min(timer.deadline());
                timer.as_mut().reset(until);
                tokio::select! {
                    biased;
                    read = &mut first_byte => Some(read),
                    () = timer.as_mut() => None,
                }
            } else {
                None
            }
        },
        // The signal came while waiting for an earlier request. Pingora then
        // answered that request without keep-alive, so this is a safeguard.
        () = std::future::ready(()), if *shutting_down => None,
    };
    if !matches!(read, Some(Ok(n)) if n > 0) {
        return None;
    }
    let mut scan = HeadScan::default();
    if scan.complete(&buf) {
        let suspect = scan.suspect(&buf);
        return Some((buf, suspect));
    }
    // The rest is due within `limit` of the first byte. A deadline earlier
    // than the timer's is re-filed in the wheel: only heads that arrive in
    // pieces pay for that.
    timer.as_mut().reset(Instant::now() + limit);
    while buf.len() <= MAX_HEAD_BYTES {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let read = tokio::select! {
            biased;
            read = stream.read_buf(&mut buf) => read,
            () = timer.as_mut() => {
                answer_too_slow(stream).await;
                return None;
            }
        };
        if !matches!(read, Ok(n) if n > 0) {
            return None;
        }
        if scan.complete(&buf) {
            break;
        }
    }
    // Past this Pingora refuses the buffer, whether or not its head ended in
    // the last read, and answers 400 without a body.
    if buf.len() > MAX_HEAD_BYTES {
        telemetry::head_refused();
        answer_and_close(stream, &Reply::headers_too_large()).await;
        return None;
    }
    let suspect = scan.suspect(&buf);
    Some((buf, suspect))
}

/// Finds the end of a request head as its bytes arrive, looking at each byte
/// a bounded number of times: a client sending a long head in tiny pieces
/// must not make the gate rescan it from the start on every read. On the
/// way it hands each header line to [`HeaderLines`], so that what Pingora's
/// checks after parsing are about is known when the head ends; the parser's
/// own verdict then takes one more pass ([`HeadScan::suspect`]).
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Where the request line starts, once a byte other than CR or LF came
    /// (like the parser, empty lines before the request line are skipped).
    start: Option<usize>,
    /// How much of the buffer earlier calls have looked at.
    scanned: usize,
    /// Where the header line now arriving starts, once the request line has
    /// ended: just past the last newline whose line was handed on (earlier
    /// calls look back a little, and must not hand a line on twice).
    line_start: Option<usize>,
    lines: HeaderLines,
}

impl HeadScan {
    /// Whether `buf` (the bytes so far; it only ever grows) holds a whole
    /// request head, or enough that Pingora's parser will decide without
    /// reading more: an empty line after the request line ends the head
    /// whether or not what precedes it parses (a malformed head is Pingora's
    /// to answer, with 400).
    pub fn complete(&mut self, buf: &[u8]) -> bool {
        let start = match self.start {
            Some(start) => start,
            None => {
                let skipped = buf[self.scanned..]
                    .iter()
                    .position(|b| !matches!(b, b'\r' | b'\n'));
                let Some(skipped) = skipped else {
                    self.scanned = buf.len();
                    return false;
                };
                self.scanned += skipped;
                self.start = Some(self.scanned);
                self.scanned
            }
        };
        // An empty line may straddle the previous read: look back two bytes.
        let from = self.scanned.saturating_sub(2).max(start);
        let rest = &buf[from..];
        self.scanned = buf.len();
        for i in memchr::memchr_iter(b'\n', rest) {
            let newline = from + i;
            let line_start = self.line_start.unwrap_or(start);
            if newline >= line_start {
                let line = &buf[line_start..newline];
                match self.line_start {
                    Some(_) => self.lines.add(line),
                    None => self.lines.request_line(line),
                }
                self.line_start = Some(newline + 1);
            }
            let ends_head = match rest.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => rest.get(i + 2) == Some(&b'\n'),
                _ => false,
            };
            if ends_head {
                return true;
            }
        }
        false
    }

    /// Whether Pingora's parser might refuse the head in `buf`, for what its
    /// lines say ([`HeaderLines::suspect`]) or for bytes the parser cannot
    /// read ([`head_check::unparsable`]); meaningful once [`Self::complete`].
    pub fn suspect(&self, buf: &[u8]) -> bool {
        self.lines.suspect() || head_check::unparsable(buf)
    }

    /// For a head that is already whole: `None` if `buf` holds no complete
    /// head, else whether it is [suspect](Self::suspect).
    pub fn suspect_whole(buf: &[u8]) -> Option<bool> {
        let mut scan = HeadScan::default();
        scan.complete(buf).then(|| scan.suspect(buf))
    }
}

/// Answers 408 on a connection whose request head did not arrive in time.
async fn answer_too_slow(stream: &mut Stream) {
    telemetry::header_timeout();
    let reply = Reply::failure(408, "The request header was not received in time.");
    answer_and_close(stream, &reply).await;
}

/// Writes `reply` on a connection that no Pingora session has taken over,
/// and closes it.
async fn answer_and_close(stream: &mut Stream, reply: &Reply) {
    let answer = reply.to_http1_closing();
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
    use super::HeadScan;

    /// One look at a whole buffer.
    fn head_is_complete(buf: &[u8]) -> bool {
        HeadScan::default().complete(buf)
    }

    /// Where the head is first found complete when `buf` arrives in pieces of `step` bytes.
    fn completes_at(buf: &[u8], step: usize) -> Option<usize> {
        scan_in_pieces(buf, step).0
    }

    /// `buf` fed to one scan in pieces of `step` bytes until the head is
    /// complete: where that was, and the scan.
    fn scan_in_pieces(buf: &[u8], step: usize) -> (Option<usize>, HeadScan) {
        let mut scan = HeadScan::default();
        let end = (step..buf.len() + step)
            .step_by(step)
            .map(|end| end.min(buf.len()))
            .find(|&end| scan.complete(&buf[..end]));
        (end, scan)
    }

    #[test]
    fn arriving_in_pieces_finds_the_same_end() {
        let heads: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody",
            b"GET / HTTP/1.1\nHost: a\n\nbody",
            b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b",
            b"\r\n\r\n\r\n",
        ];
        for head in heads {
            let whole = (1..=head.len()).find(|&end| head_is_complete(&head[..end]));
            for step in 1..=4 {
                let pieces = completes_at(head, step);
                match whole {
                    // In steps, the end is seen in the piece holding it.
                    Some(end) => assert_eq!(
                        pieces,
                        Some(end.div_ceil(step) * step).map(|e| e.min(head.len())),
                        "{head:?} in steps of {step}"
                    ),
                    None => assert_eq!(pieces, None, "{head:?} in steps of {step}"),
                }
            }
        }
    }

    #[test]
    fn header_lines_are_seen_once_whatever_the_pieces() {
        let heads: [&[u8]; 7] = [
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\nHost: a\n\nHost: b\n\n",
            b"\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: b\r\nHOST: a\r\nhOsT: a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for head in heads {
            let expected = HeadScan::suspect_whole(head).unwrap();
            for step in 1..=5 {
                let (end, scan) = scan_in_pieces(head, step);
                let end = end.unwrap_or_else(|| panic!("{}", head.escape_ascii()));
                assert_eq!(
                    scan.suspect(&head[..end]),
                    expected,
                    "{} in steps of {step}",
                    head.escape_ascii()
                );
            }
        }
        // Seen whole, these are suspect or not as expected.
        let verdicts: Vec<bool> = heads
            .iter()
            .map(|h| HeadScan::suspect_whole(h).unwrap())
            .collect();
        assert_eq!(verdicts, [true, false, true, false, true, true, true]);

        // Very many lines, counted once each whatever the pieces.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for lines in [200, 201] {
            many.truncate(16);
            for i in 0..lines {
                many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
            }
            many.extend_from_slice(b"\r\n");
            for step in [1, 3, 4096] {
                let (end, scan) = scan_in_pieces(&many, step);
                assert!(end.is_some());
                assert_eq!(
                    scan.suspect(&many),
                    lines > 200,
                    "{lines} lines in steps of {step}"
                );
            }
        }
    }

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
