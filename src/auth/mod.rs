//! Who is calling, and may they: the decision made for every request the
//! gate forwards (see docs/http-api.md, "What the upstream receives").
//!
//! [`Auth::check`] decides; it knows nothing of Pingora. The proxy turns a
//! [`Rejection`] into its [`Reply`] and an [`Identity`] into upstream headers
//! ([`identity::identity_headers`]). Sessions are resolved through the
//! upstream ([`session`]); the gate's own routes find their caller with
//! [`Auth::caller`], in Tachi's order.

pub mod identity;
pub mod policy;
pub mod same_site;
pub mod session;
pub mod shapes;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::{AuthConfig, UnknownTokens};
use crate::http::authorization::{self, Authorization};
use crate::http::reply::Reply;
pub use crate::http::request::Caller;
use crate::store::{digest, KeyRecord, Store};
use crate::upstream::Upstreams;
use session::{cookie_header, Sessions, TachiUser, UpstreamFailed};

/// What the auth check consults, borrowed from the gate's shared state for
/// one request (see `App::auth`): the `[auth]` settings, the key store, and
/// the session lookups with the upstreams they ask.
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    pub config: &'a AuthConfig,
    pub store: &'a dyn Store,
    pub sessions: &'a Sessions,
    pub upstreams: &'a Upstreams,
}

/// The `realm` of the gate's `WWW-Authenticate` challenges.
const REALM: &str = "tachi";

/// Who the caller turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials, or a cookie that was not looked at (no policy needed it).
    Guest,
    /// A live session of this user; the upstream judges it.
    Session(u64),
    /// A valid key from the store (its record shared with the store's memory).
    Key(Arc<KeyRecord>),
    /// A key the gate never issued, passed on untouched (`unknown_tokens = "forward"`).
    ForeignKey,
}

/// Why the gate refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// More than one `Authorization` header: which one counts would be a guess.
    RepeatedAuthorization,
    WrongScheme,
    EmptyToken,
    UnknownKey,
    /// A policy matched and the caller is a guest.
    NotAuthorised,
    /// A policy matched and the key lacks these permissions (sorted).
    MissingPermissions(Vec<String>),
    UpstreamUnavailable,
    /// The upstream refused the session (e.g. a banned user): its status
    /// and description, passed on.
    UpstreamRefused(u16, String),
    StoreUnavailable,
}

impl From<UpstreamFailed> for Rejection {
    fn from(e: UpstreamFailed) -> Rejection {
        match e {
            UpstreamFailed::Refused {
                status,
                description,
            } => Rejection::UpstreamRefused(status, description),
            _ => Rejection::UpstreamUnavailable,
        }
    }
}

impl Rejection {
    /// The answer for this rejection; the only place these are worded.
    pub fn reply(&self) -> Reply {
        match self {
            Rejection::RepeatedAuthorization => {
                Reply::failure(400, "Send at most one Authorization header.")
            }
            Rejection::WrongScheme => {
                Reply::failure(400, "Invalid Authorization Type - Expected Bearer.")
            }
            // RFC 6750 §3.1: a request missing its token is invalid_request.
            Rejection::EmptyToken => Reply::failure(401, "Invalid token.").header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
            ),
            Rejection::UnknownKey => Reply::failure(
                401,
                "The provided API token does not correspond with any key in the database.",
            )
            .header(
                "WWW-Authenticate",
                format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""),
            ),
            Rejection::NotAuthorised => {
                Reply::failure(401, "You are not authorised to perform this action.")
                    .header("WWW-Authenticate", format!("Bearer realm=\"{REALM}\""))
            }
            Rejection::MissingPermissions(missing) => Reply::failure(
                403,
                format!(
                    "You are missing the following permissions necessary for this request: {}",
                    missing.join(", ")
                ),
            )
            .header(
                "WWW-Authenticate",
                format!(
                    "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
                    missing.join(" ")
                ),
            ),
            Rejection::UpstreamUnavailable => Reply::upstream_unavailable(),
            Rejection::UpstreamRefused(status, description) => {
                Reply::failure(*status, description.as_str())
            }
            Rejection::StoreUnavailable => Reply::store_unavailable(),
        }
    }
}

impl Auth<'_> {
    /// Decides who the caller of a gated request is, and whether they may proceed.
    ///
    /// On the common path (a valid key, no session) this is one hash and one
    /// lookup of the key's record (in memory once the key is in use): no write
    /// and no upstream call.
    pub async fn check(
        self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Identity, Rejection> {
        let credentials =
            authorization::of_request(headers).map_err(|_| Rejection::RepeatedAuthorization)?;
        // Tachi looks at the session before `Authorization`, and ignores the
        // header when there is one. Asked only when both are sent, which API
        // clients do not: their requests carry no cookie.
        if credentials.is_some() && headers.contains_key(http::header::COOKIE) {
            if let Some(user) = Box::pin(self.cookie_user(headers)).await? {
                return Ok(Identity::Session(user));
            }
        }
        let identity = match credentials {
            Some(Authorization::Bearer(b"")) => return Err(Rejection::EmptyToken),
            Some(Authorization::Bearer(token)) => self.key_identity(token).await?,
            Some(Authorization::Basic(_) | Authorization::Other) => {
                return Err(Rejection::WrongScheme)
            }
            None => Identity::Guest,
        };

        let Some(policy) = policy::first_match(&self.config.policies, method, path) else {
            return Ok(identity);
        };
        match identity {
            Identity::Key(record) => {
                let missing = policy::missing(&policy.require, &record.permissions);
                if missing.is_empty() {
                    Ok(Identity::Key(record))
                } else {
                    Err(Rejection::MissingPermissions(
                        missing.into_iter().map(str::to_string).collect(),
                    ))
                }
            }
            // A key the gate never issued cannot prove any permission, and a made-up
            // one must not get a guest past a policy: `forward` applies only where
            // no policy does.
            Identity::ForeignKey => Err(Rejection::UnknownKey),
            // Boxed: asking the upstream is a large future that a request with a
            // key, or one no policy covers, would otherwise carry unused.
            Identity::Guest | Identity::Session(_) => {
                match Box::pin(self.cookie_user(headers)).await? {
                    Some(user) => Ok(Identity::Session(user)),
                    None => Err(Rejection::NotAuthorised),
                }
            }
        }
    }

    async fn key_identity(self, token: &[u8]) -> Result<Identity, Rejection> {
        let started = std::time::Instant::now();
        let found = match std::str::from_utf8(token).map(digest) {
            Ok(d) => match self.store.key_in_memory(&d) {
                Some(held) => Some(held),
                None => self.store.key(&d).await.map_err(|e| {
                    log::error!("{e}");
                    Rejection::StoreUnavailable
                })?,
            },
            Err(_) => None,
        };
        crate::telemetry::key_checked(started.elapsed().as_secs_f64());
        match (found, self.config.unknown_tokens) {
            (Some(record), _) => Ok(Identity::Key(record)),
            (None, UnknownTokens::Forward) => Ok(Identity::ForeignKey),
            (None, UnknownTokens::Reject) => Err(Rejection::UnknownKey),
        }
    }

    /// The user whose live session the request's cookies are; `None` without
    /// cookies or a session. A failed lookup is logged here, once for every caller.
    pub async fn cookie_user(self, headers: &HeaderMap) -> Result<Option<u64>, UpstreamFailed> {
        let Some(cookie) = cookie_header(headers) else {
            return Ok(None);
        };
        self.sessions
            .user(&cookie, self.upstreams)
            .await
            .inspect_err(|e| log::warn!("{e}"))
    }

    /// The Tachi user a URL names by ID or name; `None` when there is none.
    pub async fn named_user(self, name: &str) -> Result<Option<TachiUser>, Rejection> {
        self.sessions
            .named_user(name, self.upstreams)
            .await
            .inspect_err(|e| log::warn!("{e}"))
            .map_err(Rejection::from)
    }

    /// Who is calling one of the gate's own routes, in Tachi's order; the
    /// refusal Tachi's auth middleware gives for bad credentials. Keys the
    /// gate never issued are refused here whatever `unknown_tokens` says:
    /// these routes are the gate's own.
    pub async fn caller(self, headers: &HeaderMap) -> Result<Caller, Rejection> {
        if let Some(user) = Box::pin(self.cookie_user(headers)).await? {
            return Ok(Caller::Session(user));
        }
        let credentials =
            authorization::of_request(headers).map_err(|_| Rejection::RepeatedAuthorization)?;
        match credentials {
            None => Ok(Caller::Guest),
            Some(Authorization::Bearer(b"")) => Err(Rejection::EmptyToken),
            Some(Authorization::Bearer(token)) => match self.key_identity(token).await? {
                Identity::Key(record) => Ok(Caller::Key(record)),
                _ => Err(Rejection::UnknownKey),
            },
            Some(Authorization::Basic(_) | Authorization::Other) => Err(Rejection::WrongScheme),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_permissions_are_named_in_text_and_challenge() {
        let r = Rejection::MissingPermissions(vec!["a".into(), "b".into()]).reply();
        assert_eq!(r.status, 403);
        assert!(r.description().ends_with(": a, b"));
        assert_eq!(
            r.headers[0].1,
            "Bearer realm=\"tachi\", error=\"insufficient_scope\", scope=\"a b\""
        );
    }
}
