//! `POST /api/v1/oauth/introspect`: RFC 7662 token introspection.

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest, KeyRecord};

use super::client_auth::{client_and_token, outcome_reply, refuse, Failure, Style};

/// RFC 7662 §2.2's answer for a live key.
fn active(key: &KeyRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("active".into(), Value::Bool(true));
    m.insert("scope".into(), Value::String(key.permissions.join(" ")));
    if let Some(c) = &key.from_client {
        m.insert("client_id".into(), Value::String(c.clone()));
    }
    m.insert("sub".into(), Value::String(key.user_id.to_string()));
    m.insert("iat".into(), json!(key.created_on / 1000));
    m.insert("token_type".into(), Value::String("Bearer".into()));
    m
}

/// Tells an authenticated client whether a key is live and what it may do.
/// Anything else — unknown, revoked, malformed — is exactly `{"active": false}`.
///
/// @name POST /api/v1/oauth/introspect
pub async fn introspect(app: &App, req: &ApiRequest) -> Reply {
    let answer = async {
        let (client, token) = client_and_token(app, req).await?;
        // A public client's ID proves nothing (anyone can read it), and
        // RFC 7662 §2.1 wants introspection's callers authorised.
        if client.public {
            return Err(refuse(
                Failure::NoClientAuthentication,
                "A public client cannot introspect keys: it has no secret to prove it is itself.",
            ));
        }
        Ok(match app.store.key(&digest(&token)).await? {
            Some(key) => Reply::plain(200, Value::Object(active(&key))),
            // Guessing keys through introspection counts as guessing them.
            None => Reply::plain(200, json!({"active": false})).as_failed_auth(),
        })
    };
    answer
        .await
        .unwrap_or_else(|o| outcome_reply(o, Style::Rfc6749))
        .header("Cache-Control", "no-store")
}
