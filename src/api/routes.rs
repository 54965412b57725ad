//! The routes the gate answers itself, and which methods each allows.
//! Everything else is gated and forwarded.

use http::Method;

use crate::api::oauth::{authorize, create_code, introspect, metadata, revoke, token};
use crate::api::{api_tokens, clients, jwks};
use crate::app::App;
use crate::auth::same_site::{self, Origins};
use crate::auth::Rejection;
use crate::config::origin_of;
use crate::http::path::starts_with_ignore_case;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;

/// One of the gate's own routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Authorize,
    CreateCode,
    Token,
    Revoke,
    Introspect,
    Metadata,
    /// The metadata at the issuer's path (RFC 8414 §3.1), e.g. `tachi` for
    /// an issuer `https://x.example/tachi`.
    MetadataAt(String),
    /// The identity assertion's public keys.
    Jwks,
    Clients,
    CreateClient,
    Client(String),
    ResetSecret(String),
    /// `:userID`
    Keys(String),
    /// `:userID`
    CreateKey(String),
    /// `:userID`, `:token`
    Key(String, String),
}

/// Which own route a canonical path ([`crate::http::path::canonical`]) is, if
/// any. Fixed segments match regardless of case and one trailing slash is
/// ignored, as in Tachi's router; parameters keep their spelling.
pub fn own_route(path: &str) -> Option<Route> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    // Most gated traffic leaves here without further work.
    if !starts_with_ignore_case(path, "/api/v1/") && !starts_with_ignore_case(path, "/.well-known/")
    {
        return None;
    }
    let mut segs = [""; 7];
    let mut n = 0;
    for seg in path.split('/').skip(1) {
        if n == segs.len() {
            return None;
        }
        segs[n] = seg;
        n += 1;
    }
    let is = |i: usize, s: &str| segs[i].eq_ignore_ascii_case(s);
    let param = |i: usize| Some(segs[i].to_string()).filter(|p| !p.is_empty());
    if n == 2 && is(0, ".well-known") && is(1, "oauth-authorization-server") {
        return Some(Route::Metadata);
    }
    if n == 2 && is(0, ".well-known") && is(1, "jwks.json") {
        return Some(Route::Jwks);
    }
    if n > 2 && is(0, ".well-known") && is(1, "oauth-authorization-server") {
        return Some(Route::MetadataAt(segs[2..n].join("/")));
    }
    if !(is(0, "api") && is(1, "v1")) {
        return None;
    }
    match n {
        4 if is(2, "oauth") => match segs[3].to_ascii_lowercase().as_str() {
            "authorize" => Some(Route::Authorize),
            "create-code" => Some(Route::CreateCode),
            "token" => Some(Route::Token),
            "revoke" => Some(Route::Revoke),
            "introspect" => Some(Route::Introspect),
            _ => None,
        },
        3 if is(2, "clients") => Some(Route::Clients),
        4 if is(2, "clients") && is(3, "create") => Some(Route::CreateClient),
        4 if is(2, "clients") => param(3).map(Route::Client),
        5 if is(2, "clients") && is(4, "reset-secret") => param(3).map(Route::ResetSecret),
        5 if is(2, "users") && is(4, "api-tokens") => param(3).map(Route::Keys),
        6 if is(2, "users") && is(4, "api-tokens") && is(5, "create") => {
            param(3).map(Route::CreateKey)
        }
        6 if is(2, "users") && is(4, "api-tokens") => Some(Route::Key(param(3)?, param(5)?)),
        _ => None,
    }
}

impl Route {
    /// The methods this route answers, as an `Allow` header value. HEAD goes
    /// with GET (RFC 9110 §9.3.2): the same answer without its content.
    pub fn allowed(&self) -> &'static str {
        match self {
            Route::CreateCode
            | Route::Token
            | Route::Revoke
            | Route::Introspect
            | Route::CreateClient
            | Route::ResetSecret(_)
            | Route::CreateKey(_) => "POST",
            Route::Clients
            | Route::Metadata
            | Route::MetadataAt(_)
            | Route::Jwks
            | Route::Keys(_) => "GET, HEAD",
            Route::Authorize => "GET, HEAD, POST",
            Route::Key(..) => "DELETE",
            Route::Client(_) => "GET, HEAD, PATCH, DELETE",
        }
    }

    /// The route class for metrics and logs.
    pub fn class(&self) -> &'static str {
        match self {
            Route::Authorize
            | Route::CreateCode
            | Route::Token
            | Route::Revoke
            | Route::Introspect
            | Route::Metadata
            | Route::MetadataAt(_)
            | Route::Jwks => "oauth",
            Route::Clients | Route::CreateClient | Route::Client(_) | Route::ResetSecret(_) => {
                "clients"
            }
            Route::Keys(_) | Route::CreateKey(_) | Route::Key(..) => "api-tokens",
        }
    }

    /// The routes a browser session (Tachi's front-end) uses, which must not
    /// be usable from other sites' pages.
    pub fn is_for_sessions(&self) -> bool {
        !matches!(
            self,
            Route::Token
                | Route::Revoke
                | Route::Introspect
                | Route::Metadata
                | Route::MetadataAt(_)
                | Route::Jwks
        )
    }

    /// The endpoints whose callers prove a client secret, rate-limited per IP.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Route::Token | Route::Revoke | Route::Introspect)
    }

    /// The path to log instead of the real one, when the real one may hold a key.
    pub fn redacted_path(&self) -> Option<String> {
        match self {
            Route::Key(user, _) => Some(format!("/api/v1/users/{user}/api-tokens/[token]")),
            _ => None,
        }
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }
}

/// Answers a request to an own route whose method is allowed (a HEAD
/// request comes here as a GET; the writer leaves out the content).
pub async fn serve(app: &App, route: &Route, mut req: ApiRequest) -> Reply {
    if route.is_for_sessions() {
        let own = app.config.public_url.as_deref().and_then(origin_of);
        let origins = Origins {
            own: own.as_deref(),
            trusted: &app.config.trusted_origins,
        };
        // The consent page's form is form-encoded: its answer is guarded by
        // the token it carries, and by its Origin like every other.
        let checked = match route {
            Route::Authorize => same_site::check_origin(&req, origins),
            _ => same_site::check(&req, origins),
        };
        if let Err(refusal) = checked {
            return refusal;
        }
        req.caller = match app.auth().caller(&req.headers).await {
            Ok(caller) => caller,
            Err(rejection) => {
                let mut reply = rejection.reply();
                reply.failed_auth = rejection == Rejection::UnknownKey;
                return reply;
            }
        };
    }
    let req = &req;
    match (route, &req.method) {
        (Route::Authorize, _) => authorize::authorize(app, req).await,
        (Route::CreateCode, _) => create_code::create_code(app, req).await,
        (Route::Token, _) => token::token(app, req).await,
        (Route::Revoke, _) => revoke::revoke(app, req).await,
        (Route::Introspect, _) => introspect::introspect(app, req).await,
        (Route::Metadata, _) => metadata::metadata(app, req).await,
        (Route::MetadataAt(path), _) => metadata::metadata_at(app, req, path).await,
        (Route::Jwks, _) => jwks::jwks(app),
        (Route::Clients, _) => clients::list(app, req).await,
        (Route::CreateClient, _) => clients::create(app, req).await,
        (Route::Client(id), &Method::GET) => clients::get(app, id).await,
        (Route::Client(id), &Method::PATCH) => clients::patch(app, req, id).await,
        (Route::Client(id), &Method::DELETE) => clients::delete(app, req, id).await,
        (Route::ResetSecret(id), _) => clients::reset_secret(app, req, id).await,
        (Route::Keys(user), _) => api_tokens::list(app, req, user).await,
        (Route::CreateKey(user), _) => api_tokens::create(app, req, user).await,
        (Route::Key(user, key), _) => api_tokens::delete(app, req, user, key).await,
        (Route::Client(_), _) => Reply::method_not_allowed(route.allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_routes_are_recognised() {
        assert_eq!(own_route("/api/v1/oauth/token"), Some(Route::Token));
        assert_eq!(own_route("/api/v1/oauth/token/"), Some(Route::Token));
        assert_eq!(own_route("/api/v1/clients"), Some(Route::Clients));
        assert_eq!(
            own_route("/api/v1/clients/create"),
            Some(Route::CreateClient)
        );
        assert_eq!(
            own_route("/api/v1/clients/CI1"),
            Some(Route::Client("CI1".into()))
        );
        assert_eq!(
            own_route("/api/v1/clients/CI1/reset-secret"),
            Some(Route::ResetSecret("CI1".into()))
        );
        assert_eq!(own_route("/api/v1/clients/CI1/other"), None);
        assert_eq!(own_route("/API/V1/OAuth/Token"), Some(Route::Token));
        assert_eq!(
            own_route("/Api/v1/Clients/CIab"),
            Some(Route::Client("CIab".into()))
        );
        assert_eq!(own_route("/api/v1/clients//"), None);
        assert_eq!(own_route("/api/v1/oauth/token/x/y/z/w"), None);
        assert_eq!(own_route("/api/v1/users/1"), None);
        assert_eq!(
            own_route("/api/v1/users/me/api-tokens"),
            Some(Route::Keys("me".into()))
        );
        assert_eq!(
            own_route("/api/v1/users/3/api-tokens/create"),
            Some(Route::CreateKey("3".into()))
        );
        assert_eq!(
            own_route("/api/v1/users/3/api-tokens/abc"),
            Some(Route::Key("3".into(), "abc".into()))
        );
        assert_eq!(own_route("/api/v1/users/3/api-tokens/a/b"), None);
        assert_eq!(
            own_route("/.well-known/oauth-authorization-server"),
            Some(Route::Metadata)
        );
        assert_eq!(own_route("/.well-known/jwks.json"), Some(Route::Jwks));
        assert_eq!(own_route("/.well-known/JWKS.json/"), Some(Route::Jwks));
        assert_eq!(own_route("/.well-known/jwks.json/x"), None);
        assert_eq!(own_route("/"), None);
    }

    #[test]
    fn methods_are_checked() {
        assert!(Route::Token.allows(&Method::POST));
        assert!(!Route::Token.allows(&Method::GET));
        assert!(Route::Client("x".into()).allows(&Method::PATCH));
        assert!(!Route::Client("x".into()).allows(&Method::POST));
    }
}
