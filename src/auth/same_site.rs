//! Cross-site protection for the routes a browser session uses.
//!
//! A browser sends a site's cookie with requests other sites make, and a
//! plain HTML form can POST form-encoded or text bodies across sites
//! without asking. So a request that changes state with a session cookie
//! must be JSON (a cross-site page can only send JSON after a CORS
//! preflight, which the gate never grants for cookies), and one that names
//! its `Origin` must come from the gate's own origin or one listed in
//! `server.trusted_origins` (a Tachi front-end served elsewhere).

use http::header::{COOKIE, HOST, ORIGIN};
use http::Method;

use crate::http::body::{format_of, Format};
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;

/// Where the gate's own pages live: `server.public_url`, and the origins it
/// trusts besides.
#[derive(Debug, Clone, Copy)]
pub struct Origins<'a> {
    /// The origin of `server.public_url`, if set.
    pub own: Option<&'a str>,
    pub trusted: &'a [String],
}

/// Refuses a state-changing session request that a page of another site
/// could have made; requests without cookies, or that only read, pass. (A
/// cookie with `Authorization` is checked too: the session wins over the
/// header, as in Tachi.)
pub fn check(req: &ApiRequest, origins: Origins<'_>) -> Result<(), Reply> {
    if !changes_with_cookie(req) {
        return Ok(());
    }
    // JSON, or no body and no Content-Type: whatever else a form can send,
    // empty or not, is refused.
    let json = match req.content_type() {
        Some(_) => matches!(
            format_of(req.content_type(), &req.body),
            Ok(Some(Format::Json))
        ),
        None => req.body.is_empty(),
    };
    if !json {
        return Err(Reply::failure(
            400,
            "Requests made with a session cookie must send JSON (Content-Type: application/json).",
        ));
    }
    check_origin(req, origins)
}

/// Whether the request may change state and carries a cookie: the only
/// kind another site's page can abuse.
fn changes_with_cookie(req: &ApiRequest) -> bool {
    let reads = matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS);
    !reads && req.headers.contains_key(COOKIE)
}

/// The `Origin` half of [`check`]: a state-changing session request that
/// names its origin must come from the gate's own or a trusted one.
pub fn check_origin(req: &ApiRequest, origins: Origins<'_>) -> Result<(), Reply> {
    if !changes_with_cookie(req) {
        return Ok(());
    }
    let Some(origin) = req.headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    if is_own(req, origin, origins) || origins.trusted.iter().any(|t| t == origin) {
        return Ok(());
    }
    let shown: String = origin.chars().take(100).collect();
    Err(Reply::failure(
        403,
        format!(
            "This request came from another site ({shown}), which may not act with a session cookie."
        ),
    ))
}

/// Whether `origin` is the gate's own: `server.public_url`'s origin when
/// set, else the host the request was sent to (any scheme: a TLS-ending
/// balancer in front changes it).
fn is_own(req: &ApiRequest, origin: &str, origins: Origins<'_>) -> bool {
    if let Some(own) = origins.own {
        return own == origin;
    }
    let host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or(req.authority.as_deref());
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((host, authority), (Some(h), Some(a)) if h.eq_ignore_ascii_case(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderMap;

    fn request(method: Method, headers: &[(&str, &str)], body: &str) -> ApiRequest {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        ApiRequest {
            method,
            query: None,
            headers: h,
            body: Bytes::from(body.to_string()),
            tls: false,
            authority: None,
            caller: crate::http::request::Caller::Guest,
        }
    }

    const NONE: Origins<'static> = Origins {
        own: None,
        trusted: &[],
    };

    #[test]
    fn session_writes_must_be_json() {
        let cookie = ("cookie", "s=1");
        let form = ("content-type", "application/x-www-form-urlencoded");
        let json = ("content-type", "application/json");
        assert!(check(&request(Method::POST, &[cookie, form], "a=b"), NONE).is_err());
        assert!(check(
            &request(Method::POST, &[cookie, ("content-type", "text/plain")], "x"),
            NONE
        )
        .is_err());
        assert!(check(&request(Method::POST, &[cookie, form], ""), NONE).is_err());
        assert!(check(&request(Method::POST, &[cookie, json], "{}"), NONE).is_ok());
        assert!(check(&request(Method::DELETE, &[cookie], ""), NONE).is_ok());
        let empty_text = request(Method::POST, &[cookie, ("content-type", "text/plain")], "");
        assert!(check(&empty_text, NONE).is_err());
        assert!(check(&request(Method::POST, &[cookie], "{}"), NONE).is_err());
        // A cookie wins over Authorization, so it is checked all the same.
        let keyed = [cookie, form, ("authorization", "Bearer k")];
        assert!(check(&request(Method::POST, &keyed, "a=b"), NONE).is_err());
        // Not a session, or only reading: not this check's business.
        assert!(check(&request(Method::POST, &[form], "a=b"), NONE).is_ok());
        assert!(check(&request(Method::GET, &[cookie, form], "a=b"), NONE).is_ok());
    }

    #[test]
    fn session_writes_from_other_origins_are_refused() {
        let base = [("cookie", "s=1"), ("host", "gate.example:8080")];
        let from = |origin: &'static str| {
            let mut h = base.to_vec();
            h.push(("origin", origin));
            request(Method::DELETE, &h, "")
        };
        assert!(check(&from("http://gate.example:8080"), NONE).is_ok());
        assert!(check(&from("https://gate.example:8080"), NONE).is_ok());
        assert_eq!(
            check(&from("https://evil.example"), NONE)
                .unwrap_err()
                .status,
            403
        );
        assert!(check(&from("null"), NONE).is_err());
        let trusted = ["https://tachi.example".to_string()];
        let listed = Origins {
            own: None,
            trusted: &trusted,
        };
        assert!(check(&from("https://tachi.example"), listed).is_ok());
        let public = Origins {
            own: Some("https://gate.example"),
            trusted: &[],
        };
        assert!(check(&from("https://gate.example"), public).is_ok());
        assert!(
            check(&from("http://gate.example:8080"), public).is_err(),
            "public_url decides"
        );
        // No Origin (same-site navigation, older clients): allowed.
        assert!(check(&request(Method::DELETE, &base, ""), NONE).is_ok());
    }
}
