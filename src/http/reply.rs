//! The one place an answer the gate gives itself is shaped: Tachi's envelope
//! `{"success", "description", "body"}` plus any extra top-level fields and
//! headers. Every rejection in the gate becomes a [`Reply`] and is written by
//! the proxy glue in exactly one way.

use serde_json::{Map, Value};

/// The Content-Type of every answer the gate gives itself but its pages.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The Content-Type of the authorization endpoint's pages.
pub const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// A complete answer: status, JSON envelope and extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub envelope: Map<String, Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Whether this answer refuses an attempt to prove an identity (a wrong
    /// client secret, an introspected key that does not exist): such answers
    /// count towards the per-IP failed-authentication limit.
    pub failed_auth: bool,
    /// A page instead of the JSON envelope: its Content-Type and content
    /// (the authorization endpoint's pages, and its redirects' empty ones).
    pub page: Option<(&'static str, String)>,
}

impl Reply {
    /// `success: true` with a body.
    pub fn success(description: impl Into<String>, body: Value) -> Reply {
        let description = Value::String(description.into());
        Reply::plain(
            200,
            serde_json::json!({"success": true, "description": description, "body": body}),
        )
    }

    /// `success: false` with the given status.
    pub fn failure(status: u16, description: impl Into<String>) -> Reply {
        let description = Value::String(description.into());
        Reply::plain(
            status,
            serde_json::json!({"success": false, "description": description}),
        )
    }

    /// A plain JSON object outside Tachi's envelope, for the RFC endpoints
    /// whose answers are fixed by their RFC (introspection, metadata).
    /// Pass an object; anything else is wrapped as `{"value": …}`.
    pub fn plain(status: u16, body: Value) -> Reply {
        let envelope = match body {
            Value::Object(m) => m,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        Reply {
            status,
            envelope,
            headers: Vec::new(),
            failed_auth: false,
            page: None,
        }
    }

    /// An HTML page.
    pub fn html(status: u16, page: String) -> Reply {
        let mut reply = Reply::plain(status, Value::Null);
        reply.page = Some((HTML_CONTENT_TYPE, page));
        reply
    }

    /// A redirect with no content (`303 See Other` after a form).
    pub fn redirect(status: u16, location: String) -> Reply {
        let mut reply = Reply::plain(status, Value::Null).header("Location", location);
        reply.page = Some(("", String::new()));
        reply
    }

    /// Adds a top-level field beside the envelope's own (RFC 6749 fields, say).
    pub fn field(mut self, name: &str, value: impl Into<Value>) -> Reply {
        self.envelope.insert(name.to_string(), value.into());
        self
    }

    /// Marks the answer as a failed authentication (see [`Reply::failed_auth`]).
    pub fn as_failed_auth(mut self) -> Reply {
        self.failed_auth = true;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The description, for logs and tests.
    pub fn description(&self) -> &str {
        self.envelope
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The Content-Type of [`Reply::body_bytes`].
    pub fn content_type(&self) -> &'static str {
        self.page.as_ref().map_or(JSON_CONTENT_TYPE, |(t, _)| t)
    }

    /// The serialised body.
    pub fn body_bytes(&self) -> Vec<u8> {
        if let Some((_, page)) = &self.page {
            return page.clone().into_bytes();
        }
        // A map of JSON values always serialises.
        serde_json::to_vec(&self.envelope).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// The whole answer as HTTP/1.1 bytes, closing the connection, for the
    /// rare answer given before any Pingora session exists (a request head
    /// that never arrived). Same headers as answers written through Pingora.
    pub fn to_http1_closing(&self) -> Vec<u8> {
        let body = self.body_bytes();
        let reason = http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let date = pingora::protocols::http::date::get_cached_date();
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {JSON_CONTENT_TYPE}\r\nContent-Length: {}\r\n",
            self.status,
            body.len()
        )
        .into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(date.as_bytes());
        out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        out.extend_from_slice(&body);
        out
    }

    // Answers shared by several modules.

    /// 502: the upstream could not be reached or failed.
    pub fn upstream_unavailable() -> Reply {
        Reply::failure(502, "The Tachi server is unavailable.")
    }

    /// 503: the gate's own store failed or its database cannot be reached;
    /// never the caller's fault, and usually brief.
    pub fn store_unavailable() -> Reply {
        Reply::failure(503, "The gate's store is unavailable; try again shortly.")
            .header("Retry-After", "1")
    }

    /// 431: request headers over the gate's limit, or a head too long for
    /// Pingora's parser.
    pub fn headers_too_large() -> Reply {
        Reply::failure(431, "The request headers are too large.")
    }

    /// 405 with the methods the route does allow.
    pub fn method_not_allowed(allowed: &'static str) -> Reply {
        Reply::failure(405, format!("This route only allows {allowed}.")).header("Allow", allowed)
    }
}

impl From<crate::store::StoreError> for Reply {
    fn from(e: crate::store::StoreError) -> Reply {
        log::error!("{e}");
        Reply::store_unavailable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_has_tachi_envelope() {
        let r = Reply::failure(404, "nope");
        let v: Value = serde_json::from_slice(&r.body_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"success": false, "description": "nope"})
        );
    }

    #[test]
    fn extra_fields_sit_beside_the_envelope() {
        let r = Reply::success("ok", serde_json::json!({"a": 1})).field("access_token", "k");
        let v: Value = serde_json::from_slice(&r.body_bytes()).unwrap();
        assert_eq!(v["access_token"], "k");
        assert_eq!(v["body"]["a"], 1);
    }

    #[test]
    fn a_closing_http1_answer_has_the_usual_headers() {
        let raw = Reply::failure(408, "slow")
            .header("Retry-After", "1")
            .to_http1_closing();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 408 Request Timeout"));
        let headers: Vec<&str> = lines.collect();
        assert!(headers.contains(&"Content-Type: application/json; charset=utf-8"));
        assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
        assert!(headers.contains(&"Retry-After: 1"));
        assert!(headers.contains(&"Connection: close"));
        assert!(headers.iter().any(|h| h.starts_with("Date: ")));
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["description"], "slow");
    }
}
