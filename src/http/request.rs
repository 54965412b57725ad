//! A request to one of the gate's own routes, as its handler sees it.

use bytes::Bytes;
use http::{HeaderMap, Method};

use super::authorization::{self, Authorization};

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
    pub fn authorization(&self) -> Option<Authorization<'_>> {
        authorization::of_request(&self.headers).unwrap_or(Some(Authorization::Other))
    }
}
