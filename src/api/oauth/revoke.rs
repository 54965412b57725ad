//! `POST /api/v1/oauth/revoke`: RFC 7009 token revocation.

use serde_json::json;

use crate::app::App;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::digest;
use crate::telemetry;

use super::client_auth::{client_and_token, outcome_reply, uses_basic, Style};

/// Revokes a key the calling client issued. Answers 200 for keys that do not
/// exist or belong to another client too (RFC 7009 §2.2), so the endpoint
/// says nothing about keys the caller does not own.
///
/// @name POST /api/v1/oauth/revoke
pub async fn revoke(app: &App, req: &ApiRequest) -> Reply {
    let basic = uses_basic(req);
    let answer = async {
        let (client, token) = client_and_token(app, req).await?;
        let key = digest(&token);
        if let Some(record) = app.store.key(&key).await? {
            if record.from_client.as_deref() == Some(client.client_id.as_str()) {
                app.store.revoke_key(&key).await?;
                telemetry::keys_revoked(
                    1,
                    &format!("token_id={} client={}", record.token_id, client.client_id),
                    "RFC 7009 revocation",
                );
            }
        }
        Ok(Reply::success("Revoked.", json!({})))
    };
    answer
        .await
        .unwrap_or_else(|o| outcome_reply(o, Style::Rfc6749, basic))
        .header("Cache-Control", "no-store")
}
