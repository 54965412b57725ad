//! `POST /api/v1/oauth/revoke`: RFC 7009 token revocation.

use serde_json::json;

use crate::app::App;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::digest;
use crate::telemetry;

use super::client_auth::{client_and_token, outcome_reply, refuse, Failure, Style};

/// Revokes a key the calling client's grants produced. A key that does not
/// exist (or no longer does) is answered 200, as RFC 7009 §2.2 asks; a live
/// key that another client's grant produced is refused with
/// `unauthorized_client` (RFC 7009 §2.1: the request is refused and the
/// client told), and stays live.
///
/// @name POST /api/v1/oauth/revoke
pub async fn revoke(app: &App, req: &ApiRequest) -> Reply {
    let answer = async {
        let (client, token) = client_and_token(app, req).await?;
        let key = digest(&token);
        if let Some(record) = app.store.key(&key).await? {
            if record.from_client.as_deref() != Some(client.client_id.as_str()) {
                return Err(refuse(
                    Failure::NotYours,
                    "This key was not issued to this client.",
                ));
            }
            app.store.revoke_key(&key).await?;
            telemetry::keys_revoked(
                1,
                &format!("token_id={} client={}", record.token_id, client.client_id),
                "RFC 7009 revocation",
            );
        }
        Ok(Reply::success("Revoked.", json!({})))
    };
    answer
        .await
        .unwrap_or_else(|o| outcome_reply(o, Style::Rfc6749))
        .header("Cache-Control", "no-store")
}
