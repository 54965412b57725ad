//! Request heads that Pingora's HTTP/1 parser refuses, answered in JSON.
//!
//! Pingora answers a head it will not accept (bytes its parser cannot read,
//! a target other than a path that disagrees with `Host`, two `Host`
//! headers or one with userinfo, `Content-Length` values that disagree or
//! are not numbers, a `Transfer-Encoding` that cannot frame the body, too
//! many headers) with a bare 400 and no body, before any of the proxy's
//! callbacks run. Bad requests are answered in JSON (docs/guarantees.md), so the gate,
//! which reads each head itself ([`crate::listener::deadline`]), looks for these
//! cases first.
//!
//! Two steps keep it exact. A head is first found suspect, cheaply: by
//! [`HeaderLines`], which notes what Pingora's checks after parsing are
//! about as the head's lines are read (a look at the first byte of each
//! line, and at the few lines named above), and by [`unparsable`], the
//! parser Pingora uses run over the whole head. Only a suspect head is then
//! given to Pingora itself, on a session in memory handed the same bytes the
//! same way as the real one ([`refusal`]): the gate's answer is Pingora's
//! verdict, with no rules of its own to drift from Pingora's. The `heads`
//! fuzz target checks that every head Pingora refuses is found suspect.
//!
//! ## What this mirrors
//!
//! The suspect rules follow what pingora-core 0.9.1 refuses in
//! `HttpSession::read_request` and `HttpSession::validate_request`
//! (`pingora-core/src/protocols/http/v1/server.rs`), with the `httparse`
//! and `http` crate limits they inherit. Pingora is pinned to that exact
//! version in Cargo.toml; on an upgrade, re-read those two functions
//! against the rules here and run the `heads` fuzz target
//! (docs/ARCHITECTURE.md, "Upgrading Pingora").

use std::io::Cursor;

use bytes::BytesMut;
use pingora::protocols::http::ServerSession;
use pingora::ErrorType;

use crate::http::reply::Reply;

/// More header lines than this makes a head suspect. Pingora's parser
/// accepts at most 256; below that it may still refuse for other reasons.
const MANY_LINES: usize = 200;

/// The `http` crate refuses a request target this long or longer.
const MAX_TARGET: usize = u16::MAX as usize - 1;

/// The `http` crate refuses a header name longer than this.
const MAX_NAME: usize = u16::MAX as usize;

/// The header lines of one request head, as far as the refusals are
/// concerned: fed each line as the head arrives, so that finding a suspect
/// head costs no pass of its own (see [`crate::listener::deadline`]).
#[derive(Debug, Default)]
pub struct HeaderLines {
    hosts: u32,
    lengths: u32,
    lines: usize,
    /// A request target that is not a path, a `Host` with userinfo, a
    /// `Transfer-Encoding`, or a `Content-Length` that is not plain digits.
    odd: bool,
}

impl HeaderLines {
    /// The request line, with or without its CR. A target other than a path
    /// (absolute-form, authority-form or `*`) is rare from clients, and
    /// Pingora checks it against `Host`. A path is then checked by the `http`
    /// crate, which is stricter than the parser: it refuses `<`, `>` and
    /// `` ` `` in a path, `"`, `<` and `>` in a query, and targets of 64 KiB
    /// or more; a path with any of these bytes is suspect.
    pub fn request_line(&mut self, line: &[u8]) {
        let target = memchr::memchr(b' ', line).map_or(&[][..], |space| &line[space + 1..]);
        let target = memchr::memchr(b' ', target).map_or(target, |end| &target[..end]);
        if target.first() != Some(&b'/')
            || target.len() >= MAX_TARGET
            || memchr::memchr3(b'<', b'>', b'`', target).is_some()
            || memchr::memchr(b'"', target).is_some()
        {
            self.odd = true;
        }
    }

    /// One header line (after the request line, before the empty line), with
    /// or without its CR.
    pub fn add(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.lines += 1;
        // A name this long is refused by the `http` crate; only a line this
        // long can hold one.
        if line.len() > MAX_NAME {
            self.odd = true;
        }
        match line.first().map(|b| b | 0x20) {
            Some(b'h') if has_name(line, b"host:") => {
                self.hosts += 1;
                if memchr::memchr(b'@', line).is_some() {
                    self.odd = true;
                }
            }
            Some(b'c') if has_name(line, b"content-length:") => {
                self.lengths += 1;
                if !plain_length(&line[b"content-length:".len()..]) {
                    self.odd = true;
                }
            }
            Some(b't') if has_name(line, b"transfer-encoding:") => self.odd = true,
            _ => {}
        }
    }

    /// Whether Pingora might refuse the head for these lines, once its parser
    /// has read it: a request target that is not a path or has bytes the
    /// `http` crate refuses, more than one `Host` or `Content-Length`, a
    /// `Host` with `@`, a `Content-Length` that is not a plain number, any
    /// `Transfer-Encoding`, a very long line, or very many lines. What the
    /// parser itself refuses is [`unparsable`]'s to find.
    pub fn suspect(&self) -> bool {
        self.odd || self.hosts > 1 || self.lengths > 1 || self.lines > MANY_LINES
    }
}

/// As many header slots as Pingora's parser gives a request head.
const PARSER_HEADERS: usize = 256;

/// Whether the HTTP/1 parser Pingora uses (httparse, with the same
/// settings and room for as many headers) refuses `buf`, which holds a
/// whole head and perhaps what followed it. This catches what the line
/// marks cannot see cheaply: a header name or value with bytes a header
/// may not hold, a line with no colon, a version other than HTTP/1.0 or
/// 1.1, a method that is not a token. Pingora tries to mend some of these (by
/// escaping a target with illegal bytes) before it refuses, so a head this
/// flags is still only [suspect](HeaderLines::suspect): the verdict is
/// [`refusal`]'s. The parse reads the head's bytes once, with vector
/// instructions, and leaves the header slots uninitialised.
pub fn unparsable(buf: &[u8]) -> bool {
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; PARSER_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut request, buf, &mut slots)
        .is_err()
}

/// Whether a `Content-Length` value is one number that surely fits: 1 to 18
/// digits between optional blanks.
fn plain_length(value: &[u8]) -> bool {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    let digits = &value[start..end];
    (1..=18).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
}

/// Whether `line` starts with the header name `name` (lower case, with its
/// colon), in any case.
fn has_name(line: &[u8], name: &[u8]) -> bool {
    line.get(..name.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(name))
}

/// The gate's JSON answer to a [suspect](HeaderLines::suspect) head that
/// Pingora's parser refuses, or `None` when it accepts it. `head` is the
/// buffer the real session will be given as its prefix; the trial session
/// is given a copy the same way, over a stream with nothing more to read,
/// so that it parses exactly what the real one will. The connection is to
/// be closed after the answer, as Pingora would. The trial session makes
/// this future large: callers that await it on every request should box
/// it, so that it does not grow theirs.
pub async fn refusal(head: &[u8]) -> Option<Reply> {
    let mut trial = ServerSession::new_http1(Box::new(Cursor::new(Vec::new())));
    trial.set_pipelined_prefix(BytesMut::from(head));
    let e = trial.read_request().await.err()?;
    if e.etype() != &ErrorType::InvalidHTTPHeader {
        return None;
    }
    // Pingora's reasons are short phrases, except for a head it cannot parse
    // at all, whose reason quotes the head: that stays out of the answer.
    let reason = e
        .context
        .as_ref()
        .map(|c| c.as_str())
        .filter(|c| !c.starts_with("buf:") && c.len() <= 120);
    let description = match reason {
        Some(reason) => format!("The request header is malformed: {reason}."),
        None => "The request header is malformed.".to_string(),
    };
    Some(Reply::failure(400, description))
}

#[cfg(test)]
mod tests {
    use super::refusal;
    use crate::listener::deadline::HeadScan;

    /// Whether `head` (whole) is suspect, as the gate's head scan finds it.
    fn suspect(head: &[u8]) -> bool {
        HeadScan::suspect_whole(head).expect("a whole head")
    }

    #[test]
    fn ordinary_heads_are_not_suspect() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\nAccept: */*\r\n\r\n",
            b"POST /api/v1/oauth/token HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{\"a\":\"b\"}",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\t 123456789012345678 \r\n\r\n",
            b"GET / HTTP/1.1\nhost: a\nx-host: b\nhosts: c\n\n",
            b"GET / HTTP/1.0\r\n\r\n",
            // Body bytes after the head are not headers.
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\nHost: b\r\n\r\n",
        ] {
            assert!(!suspect(head), "{}", head.escape_ascii());
        }
    }

    #[test]
    fn heads_pingora_may_refuse_are_suspect() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n"[..],
            b"\r\nGET / HTTP/1.1\nhost: a\nHost: a\n\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(suspect(head), "{}", head.escape_ascii());
        }
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..300 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(suspect(&many));
    }

    #[test]
    fn heads_the_parser_cannot_read_are_suspect_and_refused() {
        for head in [
            // A space in a header name, a line with no colon, an empty name.
            &b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n",
            // A continuation line (obsolete line folding).
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  more\r\n\r\n",
            // A control byte in a value, and a bare CR.
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n",
            // Versions other than HTTP/1.0 and 1.1, and a method not a token.
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1x\r\nHost: a\r\n\r\n",
            b"GET / FTP/1.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(suspect(head), "{}", head.escape_ascii());
            let answer = refused(head);
            assert_eq!(
                answer.as_deref(),
                Some("The request header is malformed."),
                "{}",
                head.escape_ascii()
            );
        }
        // Targets the parser takes but the `http` crate does not, and a
        // header name too long for it: refused after parsing.
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(65_534));
        let long_name = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX{}: 1\r\n\r\n",
            "a".repeat(65_535)
        );
        for (head, reason) in [
            (
                &b"GET /a<b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
                "invalid uri /a<b",
            ),
            (b"GET /a>b HTTP/1.1\r\nHost: a\r\n\r\n", "invalid uri /a>b"),
            (b"GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n", "invalid uri /a`b"),
            (
                b"GET /?q=\"x\" HTTP/1.1\r\nHost: a\r\n\r\n",
                "invalid uri /?q=\"x\"",
            ),
            (long_target.as_bytes(), ""),
            (long_name.as_bytes(), "while parsing request header"),
        ] {
            assert!(suspect(head), "{}", &head.escape_ascii().to_string()[..40]);
            let answer = refused(head).unwrap_or_default();
            assert!(
                answer.starts_with("The request header is malformed"),
                "{answer}"
            );
            assert!(answer.contains(reason), "{answer}");
        }
        // Suspect for those bytes, but accepted: a quote in a path, a
        // backquote in a query, any of them in a fragment.
        for head in [
            &b"GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET /?a`b HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /a#<b> HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(suspect(head), "{}", head.escape_ascii());
            assert_eq!(refused(head), None, "{}", head.escape_ascii());
        }

        // Bytes Pingora's parser takes: tabs and obs-text in values, any
        // token as a method, names with the rarer token characters.
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\tb \xe9\r\n\r\n"[..],
            b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX!#$%&'*+.^_`|~: 1\r\n\r\n",
        ] {
            assert!(!suspect(head), "{}", head.escape_ascii());
        }
    }

    /// Runs `refusal` to completion.
    fn refused(head: &[u8]) -> Option<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        if !suspect(head) {
            return None;
        }
        rt.block_on(refusal(head)).map(|r| {
            assert_eq!(r.status, 400);
            r.description().to_string()
        })
    }

    #[test]
    fn the_answer_follows_pingoras_verdict() {
        let two_hosts = refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").unwrap();
        assert!(two_hosts.contains("multiple Host"), "{two_hosts}");
        let lengths = refused(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
        assert!(lengths.contains("Content-Length"), "{lengths}");
        let http10_te =
            refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").unwrap();
        assert!(http10_te.contains("Transfer-Encoding"), "{http10_te}");
        assert!(
            refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").is_some()
        );
        for head in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
        ] {
            assert!(refused(head).is_some(), "{}", head.escape_ascii());
        }
        // A request line too long for Pingora's first read, with a space its
        // parser takes only after escaping the target, which needs the whole
        // line: the trial is given the whole head at once, as the real
        // session is, and accepts it.
        let long = format!(
            "GET /a b{} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "a".repeat(5000)
        );
        assert_eq!(refused(long.as_bytes()), None);

        // Suspect, but Pingora accepts these: the gate lets them through.
        assert_eq!(
            refused(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"
            ),
            None
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            None
        );
        assert_eq!(refused(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        // Not suspect: never parsed here, whatever Pingora makes of it.
        assert_eq!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
    }
}
