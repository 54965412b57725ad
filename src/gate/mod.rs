//! The gate (SPEC §5): who is calling, may they, and what the upstream is told.
//!
//! [`check`] decides; it knows nothing of Pingora. The proxy glue turns a
//! [`Rejection`] into its [`Reply`] and an [`Identity`] into upstream headers
//! with [`identity_headers`].

pub mod credentials;
pub mod path;
pub mod policy;
pub mod session;

use std::sync::Arc;

use bytes::BytesMut;
use http::header::{InvalidHeaderValue, MaxSizeReached};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::app::App;
use crate::config::UnknownTokens;
use crate::reply::Reply;
use crate::store::{digest, KeyRecord};
use credentials::Authorization;

/// Identity headers the gate sets; any inbound copies are removed first.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-tachi-user-id",
    "x-tachi-permissions",
    "x-tachi-client-id",
    "x-tachi-token-id",
];

/// The identity headers as header names, in the order of [`IDENTITY_HEADERS`].
const IDENTITY_NAMES: [HeaderName; 4] = [
    HeaderName::from_static(IDENTITY_HEADERS[0]),
    HeaderName::from_static(IDENTITY_HEADERS[1]),
    HeaderName::from_static(IDENTITY_HEADERS[2]),
    HeaderName::from_static(IDENTITY_HEADERS[3]),
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Why a forwarded request's headers could not be written.
#[derive(Debug)]
pub enum ForwardError {
    /// A key record holds a value that cannot be a header: it is corrupt,
    /// since the store's writers validate every part.
    CorruptRecord(InvalidHeaderValue),
    /// More headers than a header map can hold (unreachable below the
    /// gate's own header size limit).
    TooManyHeaders,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::CorruptRecord(e) => write!(f, "corrupt key record: {e}"),
            ForwardError::TooManyHeaders => f.write_str("too many headers to forward"),
        }
    }
}

impl From<MaxSizeReached> for ForwardError {
    fn from(_: MaxSizeReached) -> ForwardError {
        ForwardError::TooManyHeaders
    }
}

/// Rewrites the headers of a request the gate forwards (SPEC §5): removes
/// what a client could spoof, sets `X-Forwarded-For` (to `client_ip`, or
/// removes it when the client did not come over TCP) and
/// `X-Forwarded-Proto` afresh, and for a key adds the identity headers and,
/// with `hide_credentials`, drops `Authorization`.
pub fn forward_headers(
    headers: &mut HeaderMap,
    client_ip: Option<HeaderValue>,
    proto: &'static str,
    identity: &Identity,
    hide_credentials: bool,
) -> Result<(), ForwardError> {
    for name in spoofable_headers(headers) {
        headers.remove(&name);
    }
    let key_headers = identity_headers(identity).map_err(ForwardError::CorruptRecord)?;
    if hide_credentials && matches!(identity, Identity::Key(_)) {
        headers.remove(http::header::AUTHORIZATION);
    }
    // Room for every header added, so that the map grows at most once.
    headers.try_reserve(2 + key_headers.iter().flatten().count())?;
    match client_ip {
        Some(ip) => headers.try_insert(X_FORWARDED_FOR, ip)?,
        None => headers.remove(X_FORWARDED_FOR),
    };
    headers.try_insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto))?;
    for (name, value) in key_headers.into_iter().flatten() {
        headers.try_insert(name, value)?;
    }
    Ok(())
}

/// Inbound headers that could pass for the gate's word upstream: the identity
/// headers, and every forwarding header (`X-Forwarded-*`, `Forwarded`,
/// `X-Real-IP`), of which the gate sets `X-Forwarded-For` and
/// `X-Forwarded-Proto` afresh. A client's `X-Forwarded-Host` would otherwise
/// reach a framework that trusts its proxy (Express's `trust proxy`) as the
/// site's own host name. Names match with `_` for `-` too, as CGI-style
/// servers merge the two.
pub fn spoofable_headers(headers: &HeaderMap) -> Vec<http::HeaderName> {
    headers
        .keys()
        .filter(|name| is_spoofable(name.as_str()))
        .cloned()
        .collect()
}

fn is_spoofable(name: &str) -> bool {
    let is = |header: &str| name.len() == header.len() && starts_dashed(name, header);
    if starts_dashed(name, "x-tachi-") {
        return IDENTITY_HEADERS.iter().any(|h| is(h));
    }
    starts_dashed(name, "x-forwarded-") || is("forwarded") || is("x-real-ip")
}

/// Whether `name` begins with `prefix`, reading `_` in `name` as `-`. Both
/// are lower case (header names are kept so).
fn starts_dashed(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(n, p)| n == p || (n == b'_' && p == b'-'))
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
    StoreUnavailable,
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
            Rejection::EmptyToken => Reply::failure(401, "Invalid token.")
                .header("WWW-Authenticate", format!("Bearer realm=\"{REALM}\"")),
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
            Rejection::StoreUnavailable => Reply::store_unavailable(),
        }
    }
}

/// All `Cookie` headers of a request joined as one (HTTP/2 splits them).
pub fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let mut parts = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let first = parts.next()?;
    Some(parts.fold(first.to_string(), |mut acc, p| {
        acc.push_str("; ");
        acc.push_str(p);
        acc
    }))
}

/// Decides who the caller of a gated request is, and whether they may proceed.
///
/// On the common path (a valid key, no session) this is one hash and one
/// lookup of the key's record (in memory once the key is in use): no write
/// and no upstream call.
pub async fn check(
    app: &App,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<Identity, Rejection> {
    let auth = credentials::of_request(headers).map_err(|_| Rejection::RepeatedAuthorization)?;
    let identity = match auth {
        Some(Authorization::Bearer(b"")) => return Err(Rejection::EmptyToken),
        Some(Authorization::Bearer(token)) => key_identity(app, token).await?,
        Some(Authorization::Basic(_) | Authorization::Other) => return Err(Rejection::WrongScheme),
        None => Identity::Guest,
    };

    let Some(policy) = policy::first_match(&app.config.gate.policies, method, path) else {
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
        Identity::Guest | Identity::Session(_) => match Box::pin(app.cookie_user(headers)).await {
            Ok(Some(user)) => Ok(Identity::Session(user)),
            Ok(None) => Err(Rejection::NotAuthorised),
            Err(_) => Err(Rejection::UpstreamUnavailable),
        },
    }
}

async fn key_identity(app: &App, token: &[u8]) -> Result<Identity, Rejection> {
    let started = std::time::Instant::now();
    let found = match std::str::from_utf8(token).map(digest) {
        Ok(d) => match app.store.key_in_memory(&d) {
            Some(held) => Some(held),
            None => app.store.key(&d).await.map_err(|e| {
                log::error!("{e}");
                Rejection::StoreUnavailable
            })?,
        },
        Err(_) => None,
    };
    crate::telemetry::key_checked(started.elapsed().as_secs_f64());
    match (found, app.config.gate.unknown_tokens) {
        (Some(record), _) => Ok(Identity::Key(record)),
        (None, UnknownTokens::Forward) => Ok(Identity::ForeignKey),
        (None, UnknownTokens::Reject) => Err(Rejection::UnknownKey),
    }
}

/// A caller's identity headers, in the order of [`IDENTITY_HEADERS`]: none
/// for a caller without a key, and no client header for a key no client
/// was given.
pub type IdentityHeaders = [Option<(HeaderName, HeaderValue)>; 4];

/// The identity headers to set upstream for a caller. This runs for every
/// request with a key, so the values are written into one buffer, each split
/// off as it is complete: two allocations in all, where a value each and a
/// list took five. Every part comes from the store, whose writers validate
/// it, so a value that cannot be a header is a corrupt record.
pub fn identity_headers(identity: &Identity) -> Result<IdentityHeaders, InvalidHeaderValue> {
    let Identity::Key(k) = identity else {
        return Ok(Default::default());
    };
    let mut text = BytesMut::with_capacity(64);
    let [user, permissions, client, token] = IDENTITY_NAMES;
    text.extend_from_slice(itoa::Buffer::new().format(k.user_id).as_bytes());
    let user = (user, value(&mut text)?);
    for (i, permission) in k.permissions.iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b",");
        }
        text.extend_from_slice(permission.as_bytes());
    }
    let permissions = (permissions, value(&mut text)?);
    let client = match &k.from_client {
        Some(id) => {
            text.extend_from_slice(id.as_bytes());
            Some((client, value(&mut text)?))
        }
        None => None,
    };
    text.extend_from_slice(k.token_id.as_bytes());
    let token = (token, value(&mut text)?);
    Ok([Some(user), Some(permissions), client, Some(token)])
}

/// The bytes written to `text` since the last split, as a header value that
/// shares the buffer.
fn value(text: &mut BytesMut) -> Result<HeaderValue, InvalidHeaderValue> {
    HeaderValue::from_maybe_shared(text.split().freeze())
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

    #[test]
    fn key_identity_headers_are_complete() {
        let k = KeyRecord {
            from_client: Some("CI1".into()),
            ..key_record()
        };
        let h = listed(identity_headers(&keyed(k)).unwrap());
        assert_eq!(
            h,
            vec![
                ("x-tachi-user-id".into(), HeaderValue::from_static("5")),
                (
                    "x-tachi-permissions".into(),
                    HeaderValue::from_static("a,b")
                ),
                ("x-tachi-client-id".into(), HeaderValue::from_static("CI1")),
                ("x-tachi-token-id".into(), HeaderValue::from_static("t1")),
            ]
        );
        assert!(listed(identity_headers(&Identity::Session(1)).unwrap()).is_empty());
        // Without a client, and with one permission or none: the values
        // around the missing one keep their own bytes.
        for (permissions, joined) in [(vec!["a".to_string()], "a"), (vec![], "")] {
            let k = KeyRecord {
                permissions,
                user_id: 1234567,
                token_id: "tok".into(),
                ..key_record()
            };
            assert_eq!(
                listed(identity_headers(&keyed(k)).unwrap()),
                vec![
                    (
                        "x-tachi-user-id".into(),
                        HeaderValue::from_static("1234567")
                    ),
                    (
                        "x-tachi-permissions".into(),
                        HeaderValue::from_static(joined)
                    ),
                    ("x-tachi-token-id".into(), HeaderValue::from_static("tok")),
                ]
            );
        }
    }

    /// The headers set, as (name, value) pairs.
    fn listed(h: IdentityHeaders) -> Vec<(String, HeaderValue)> {
        h.into_iter()
            .flatten()
            .map(|(n, v)| (n.to_string(), v))
            .collect()
    }

    fn key_record() -> KeyRecord {
        KeyRecord {
            token_id: "t1".into(),
            user_id: 5,
            identifier: "x".into(),
            permissions: vec!["a".into(), "b".into()],
            from_client: None,
            created_on: 0,
        }
    }

    fn keyed(record: KeyRecord) -> Identity {
        Identity::Key(Arc::new(record))
    }

    fn inbound() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("host", "tachi"),
            ("authorization", "Bearer k"),
            ("X-Tachi-User-ID", "1"),
            ("x_tachi_permissions", "delete_score"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            ("accept", "*/*"),
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        h
    }

    fn values(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_key_is_forwarded_with_its_identity_and_without_spoofed_headers() {
        let mut h = inbound();
        let ip = Some(HeaderValue::from_static("127.0.0.1"));
        forward_headers(&mut h, ip, "http", &keyed(key_record()), true).unwrap();
        assert_eq!(values(&h, "x-tachi-user-id"), ["5"]);
        assert_eq!(values(&h, "x-tachi-permissions"), ["a,b"]);
        assert_eq!(values(&h, "x-tachi-token-id"), ["t1"]);
        assert!(values(&h, "x-tachi-client-id").is_empty());
        assert!(values(&h, "x_tachi_permissions").is_empty());
        assert_eq!(values(&h, "x-forwarded-for"), ["127.0.0.1"]);
        assert_eq!(values(&h, "x-forwarded-proto"), ["http"]);
        assert!(values(&h, "forwarded").is_empty());
        assert!(values(&h, "x-forwarded-host").is_empty());
        assert!(values(&h, "authorization").is_empty());
        assert_eq!(values(&h, "host"), ["tachi"]);
        assert_eq!(values(&h, "accept"), ["*/*"]);
        assert_eq!(h.len(), 7);
    }

    #[test]
    fn others_keep_their_authorization_and_get_no_identity() {
        for identity in [Identity::Guest, Identity::ForeignKey, Identity::Session(3)] {
            let mut h = inbound();
            forward_headers(&mut h, None, "https", &identity, true).unwrap();
            assert_eq!(values(&h, "authorization"), ["Bearer k"], "{identity:?}");
            assert!(values(&h, "x-forwarded-for").is_empty(), "not over TCP");
            assert_eq!(values(&h, "x-forwarded-proto"), ["https"]);
            assert!(IDENTITY_HEADERS.iter().all(|n| !h.contains_key(*n)));
        }
        // Without hide_credentials a key's Authorization is forwarded too.
        let mut h = inbound();
        forward_headers(&mut h, None, "http", &keyed(key_record()), false).unwrap();
        assert_eq!(values(&h, "authorization"), ["Bearer k"]);
    }

    #[test]
    fn a_record_that_cannot_be_a_header_is_an_error() {
        let mut record = key_record();
        record.token_id = "a\nb".into();
        let mut h = inbound();
        let e = forward_headers(&mut h, None, "http", &keyed(record), true).unwrap_err();
        assert!(matches!(e, ForwardError::CorruptRecord(_)), "{e}");
    }

    #[test]
    fn spoofable_headers_are_the_identity_and_forwarding_ones_in_either_spelling() {
        let mut h = HeaderMap::new();
        for name in [
            "x-tachi-user-id",
            "X_Tachi_User_ID",
            "x-tachi-permissions",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "x-tachi-other",
            "x-tachi-user-idx",
            "x-forwarded-host",
            "X_Forwarded_Port",
            "x-forwarded-for",
            "x-forwardedfor",
            "x-real-ip-not",
            "accept",
        ] {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "1".parse().unwrap(),
            );
        }
        let mut names: Vec<String> = spoofable_headers(&h)
            .iter()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-real-ip",
                "x-tachi-permissions",
                "x-tachi-user-id",
                "x_forwarded_port",
                "x_real_ip",
                "x_tachi_user_id"
            ]
        );
    }

    #[test]
    fn cookies_are_joined() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        assert_eq!(cookie_header(&h).as_deref(), Some("a=1; b=2"));
        assert_eq!(cookie_header(&HeaderMap::new()), None);
    }
}
