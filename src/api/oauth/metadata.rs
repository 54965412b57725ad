//! `GET /.well-known/oauth-authorization-server`: RFC 8414 metadata.

use serde_json::json;

use crate::app::App;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;

/// The issuer: `server.public_url`, else the request's scheme and Host.
pub fn issuer(app: &App, req: &ApiRequest) -> String {
    if let Some(url) = &app.config.public_url {
        return url.clone();
    }
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.authority.clone())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .or_else(|| {
            let tls = app.config.tls.iter().flat_map(|t| t.listen.iter());
            app.config
                .listen
                .iter()
                .chain(tls)
                .next()
                .map(|a| a.to_string())
        })
        .unwrap_or_else(|| "localhost".to_string());
    let scheme = if req.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Describes the gate's OAuth2 endpoints for client libraries that discover them.
///
/// @name GET /.well-known/oauth-authorization-server
pub async fn metadata(app: &App, req: &ApiRequest) -> Reply {
    let issuer = issuer(app, req);
    // Public clients (native apps) authenticate by their ID alone: "none".
    let auth_methods = json!(["client_secret_basic", "client_secret_post", "none"]);
    let mut body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/api/v1/oauth/authorize"),
        "response_modes_supported": ["query"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint": format!("{issuer}/api/v1/oauth/token"),
        "revocation_endpoint": format!("{issuer}/api/v1/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/api/v1/oauth/introspect"),
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        // Introspection needs a client that can prove itself: no "none".
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "scopes_supported": app.config.oauth.permissions,
    });
    if app.assertions.is_some() {
        // The keys that verify the identity assertions sent upstream.
        body["jwks_uri"] = json!(format!("{issuer}/.well-known/jwks.json"));
    }
    let reply = Reply::plain(200, body);
    if app.config.public_url.is_some() {
        return reply;
    }
    // Built from this request's Host: a cache between the gate and its
    // clients must neither keep it nor hand it to a request for another host.
    reply
        .header("Cache-Control", "no-store")
        .header("Vary", "Host")
}

/// The metadata at the path-suffixed well-known URL of an issuer with a
/// path (RFC 8414 §3.1); 404 for any other path.
///
/// @name GET /.well-known/oauth-authorization-server/*
pub async fn metadata_at(app: &App, req: &ApiRequest, path: &str) -> Reply {
    let issuer_path = app
        .config
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.path().trim_matches('/').to_string())
        .filter(|p| !p.is_empty());
    match issuer_path {
        Some(p) if p == path.trim_matches('/') => metadata(app, req).await,
        _ => Reply::failure(404, "No such metadata: the issuer has no such path."),
    }
}
