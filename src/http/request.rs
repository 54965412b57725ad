//! A request to one of the gate's own routes, as its handler sees it.

use bytes::Bytes;
use http::{HeaderMap, Method};

use std::sync::Arc;

use super::authorization::{self, Authorization};
use super::reply::Reply;
use crate::store::KeyRecord;

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
    /// Who is calling, for the routes a session or key may use (found by
    /// `Auth::caller` before the handler runs); a guest elsewhere.
    pub caller: Caller,
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

/// Who is calling one of the gate's own routes, found in Tachi's order
/// (its `auth.ts`): a live session first, whose `Authorization` is then
/// ignored; else the key in `Authorization`; else a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Guest,
    Session(u64),
    Key(Arc<KeyRecord>),
}

impl Caller {
    /// The session's user, for routes only a session may use; for anyone
    /// else a 401 saying `refusal`.
    pub fn session(&self, refusal: &str) -> Result<u64, Reply> {
        match self {
            Caller::Session(user) => Ok(*user),
            _ => Err(Reply::failure(401, refusal)),
        }
    }
}
