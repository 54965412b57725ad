//! The routes the gate answers itself, and which methods each allows.
//! Everything else is gated and forwarded.

use http::Method;

use crate::api::{clients, tokens};
use crate::app::{ApiRequest, App};
use crate::oauth::{create_code, introspect, metadata, revoke, token};
use crate::reply::Reply;

/// One of the gate's own routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateCode,
    Token,
    Revoke,
    Introspect,
    Metadata,
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

/// Which own route a path is, if any. Query strings are not part of `path`;
/// one trailing slash is ignored, as Tachi's router does.
pub fn own_route(path: &str) -> Option<Route> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    match path {
        "/api/v1/oauth/create-code" => return Some(Route::CreateCode),
        "/api/v1/oauth/token" => return Some(Route::Token),
        "/api/v1/oauth/revoke" => return Some(Route::Revoke),
        "/api/v1/oauth/introspect" => return Some(Route::Introspect),
        "/.well-known/oauth-authorization-server" => return Some(Route::Metadata),
        "/api/v1/clients" => return Some(Route::Clients),
        "/api/v1/clients/create" => return Some(Route::CreateClient),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/api/v1/clients/") {
        return match rest.split('/').collect::<Vec<_>>().as_slice() {
            [id] if !id.is_empty() => Some(Route::Client((*id).to_string())),
            [id, "reset-secret"] if !id.is_empty() => Some(Route::ResetSecret((*id).to_string())),
            _ => None,
        };
    }
    let rest = path.strip_prefix("/api/v1/users/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [user, "api-tokens"] if !user.is_empty() => Some(Route::Keys((*user).to_string())),
        [user, "api-tokens", "create"] if !user.is_empty() => {
            Some(Route::CreateKey((*user).to_string()))
        }
        [user, "api-tokens", token] if !user.is_empty() && !token.is_empty() => {
            Some(Route::Key((*user).to_string(), (*token).to_string()))
        }
        _ => None,
    }
}

impl Route {
    /// The methods this route answers, as an `Allow` header value.
    pub fn allowed(&self) -> &'static str {
        match self {
            Route::CreateCode
            | Route::Token
            | Route::Revoke
            | Route::Introspect
            | Route::CreateClient
            | Route::ResetSecret(_)
            | Route::CreateKey(_) => "POST",
            Route::Clients | Route::Metadata | Route::Keys(_) => "GET",
            Route::Key(..) => "DELETE",
            Route::Client(_) => "GET, PATCH, DELETE",
        }
    }

    pub fn allows(&self, method: &Method) -> bool {
        self.allowed().split(", ").any(|m| m == method.as_str())
    }
}

/// Answers a request to an own route whose method is allowed.
pub async fn serve(app: &App, route: &Route, req: &ApiRequest) -> Reply {
    match (route, &req.method) {
        (Route::CreateCode, _) => create_code::create_code(app, req).await,
        (Route::Token, _) => token::token(app, req).await,
        (Route::Revoke, _) => revoke::revoke(app, req).await,
        (Route::Introspect, _) => introspect::introspect(app, req).await,
        (Route::Metadata, _) => metadata::metadata(app, req).await,
        (Route::Clients, _) => clients::list(app, req).await,
        (Route::CreateClient, _) => clients::create(app, req).await,
        (Route::Client(id), &Method::GET) => clients::get(app, id).await,
        (Route::Client(id), &Method::PATCH) => clients::patch(app, req, id).await,
        (Route::Client(id), &Method::DELETE) => clients::delete(app, req, id).await,
        (Route::ResetSecret(id), _) => clients::reset_secret(app, req, id).await,
        (Route::Keys(user), _) => tokens::list(app, req, user).await,
        (Route::CreateKey(user), _) => tokens::create(app, req, user).await,
        (Route::Key(user, key), _) => tokens::delete(app, req, user, key).await,
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
