//! The routes the gate answers itself, and which methods each allows.
//! Everything else is gated and forwarded.

use http::Method;

use crate::api::clients;
use crate::app::{ApiRequest, App};
use crate::oauth::{create_code, token};
use crate::reply::Reply;

/// One of the gate's own routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    CreateCode,
    Token,
    Clients,
    CreateClient,
    Client(String),
    ResetSecret(String),
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
        "/api/v1/clients" => return Some(Route::Clients),
        "/api/v1/clients/create" => return Some(Route::CreateClient),
        _ => {}
    }
    let rest = path.strip_prefix("/api/v1/clients/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [id] if !id.is_empty() => Some(Route::Client((*id).to_string())),
        [id, "reset-secret"] if !id.is_empty() => Some(Route::ResetSecret((*id).to_string())),
        _ => None,
    }
}

impl Route {
    /// The methods this route answers, as an `Allow` header value.
    pub fn allowed(&self) -> &'static str {
        match self {
            Route::CreateCode | Route::Token | Route::CreateClient | Route::ResetSecret(_) => {
                "POST"
            }
            Route::Clients => "GET",
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
        (Route::Clients, _) => clients::list(app, req).await,
        (Route::CreateClient, _) => clients::create(app, req).await,
        (Route::Client(id), &Method::GET) => clients::get(app, id).await,
        (Route::Client(id), &Method::PATCH) => clients::patch(app, req, id).await,
        (Route::Client(id), &Method::DELETE) => clients::delete(app, req, id).await,
        (Route::ResetSecret(id), _) => clients::reset_secret(app, req, id).await,
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
