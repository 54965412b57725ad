//! `/api/v1/users/:userID/api-tokens…`: a user's API keys, as Tachi serves
//! them (docs/http-api.md, "API keys"). Only the user's own browser session may use
//! these routes; API keys never can.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::clients::NO_SUCH_CLIENT;
use super::fields::{only_fields, permission_list};
use crate::api::views;
use crate::app::App;
use crate::http::body;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest, now_ms, Digest, KeyInsert, KeyRecord};
use crate::telemetry;

const NOT_BY_KEY: &str =
    "This request cannot be performed by an API key, and requires authentication.";

/// The session's user, when it is the one `:userID` names (a number or `me`).
async fn own_user(app: &App, req: &ApiRequest, user_param: &str) -> Result<u64, Reply> {
    if req.headers.contains_key(http::header::AUTHORIZATION) {
        return Err(Reply::failure(403, NOT_BY_KEY));
    }
    let user = app
        .auth()
        .session_required(
            &req.headers,
            "This endpoint requires session-level authentication.",
        )
        .await?;
    if user_param == "me" {
        return Ok(user);
    }
    match user_param.parse::<u64>() {
        Ok(id) if id == user => Ok(user),
        Ok(_) => Err(Reply::failure(403, NOT_BY_KEY)),
        Err(_) => Err(Reply::failure(
            400,
            "userID must be a numeric user ID or 'me'.",
        )),
    }
}

/// The user's keys; never the keys themselves.
///
/// @name GET /api/v1/users/:userID/api-tokens
pub async fn list(app: &App, req: &ApiRequest, user_param: &str) -> Reply {
    let user = match own_user(app, req, user_param).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match app.store.keys_of_user(user).await {
        Ok(keys) => views::key_list(&keys),
        Err(e) => e.into(),
    }
}

/// What a key creation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRequest {
    /// A key with a client's permissions, tied to that client.
    FromClient(String),
    /// A key with chosen permissions and name.
    Custom {
        identifier: String,
        permissions: Vec<String>,
    },
}

/// The fields a key creation may send.
const KEY_FIELDS: [&str; 3] = ["clientID", "permissions", "identifier"];

/// Validates `{clientID}` or `{permissions, identifier}`, not both, and no
/// other fields.
pub fn key_request(map: &Map<String, Value>, known: &[String]) -> Result<KeyRequest, Reply> {
    only_fields(map, &KEY_FIELDS)?;
    let custom = map.contains_key("permissions") || map.contains_key("identifier");
    match (map.get("clientID"), custom) {
        (Some(_), true) => Err(Reply::failure(
            400,
            "Send either clientID, or permissions and identifier, not both.",
        )),
        (Some(Value::String(id)), false) => Ok(KeyRequest::FromClient(id.clone())),
        (Some(_), false) => Err(Reply::failure(400, "clientID must be a string.")),
        (None, false) => Err(Reply::failure(
            400,
            "Send either clientID, or permissions and identifier.",
        )),
        (None, true) => {
            let identifier = match map.get("identifier") {
                Some(Value::String(s)) if (1..=120).contains(&s.chars().count()) => s.clone(),
                _ => {
                    return Err(Reply::failure(
                        400,
                        "identifier must be a string of 1 to 120 characters.",
                    ))
                }
            };
            let permissions = permission_list(map.get("permissions"), known)?;
            Ok(KeyRequest::Custom {
                identifier,
                permissions,
            })
        }
    }
}

/// Makes and stores a key for `user` (one per client), answering it once.
pub async fn create_key(app: &App, user: u64, request: KeyRequest, via: &str) -> Reply {
    if let Err(refusal) = key_room(app, user).await {
        return refusal;
    }
    let minted = match request {
        KeyRequest::FromClient(id) => match app.store.client(&id).await {
            Ok(Some(client)) => KeyRecord::mint_for_client(user, &client, now_ms()),
            Ok(None) => return Reply::failure(404, NO_SUCH_CLIENT),
            Err(e) => return e.into(),
        },
        KeyRequest::Custom {
            identifier,
            permissions,
        } => KeyRecord::mint(user, identifier, &permissions, None, now_ms()),
    };
    match app.store.insert_key(&minted.digest, &minted.record).await {
        Ok(KeyInsert::Inserted) => {
            telemetry::key_issued(minted.record.audited(), via);
            Reply::success(
                "Successfully created new API Token.",
                views::key(&minted.record, Some(&minted.key)),
            )
        }
        Ok(KeyInsert::ClientKeyExists) => {
            Reply::failure(409, "This user already has an API key for this client.")
        }
        Ok(KeyInsert::NoSuchClient) => Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => e.into(),
    }
}

/// The refusal when `user` already holds `oauth.keys_per_user` keys, so one
/// session cannot grow the store without bound.
pub async fn key_room(app: &App, user: u64) -> Result<(), Reply> {
    let cap = app.config.oauth.keys_per_user;
    if app.store.key_count_of_user(user).await? >= cap {
        return Err(Reply::failure(
            400,
            format!(
                "You have too many API keys (at most {cap}); delete one before making another."
            ),
        ));
    }
    Ok(())
}

/// Finds a key by its token ID or its value.
pub async fn find_key(app: &App, token: &str) -> Result<Option<(Digest, Arc<KeyRecord>)>, Reply> {
    if let Some(found) = app.store.key_by_token_id(token).await? {
        return Ok(Some(found));
    }
    let d = digest(token);
    Ok(app.store.key(&d).await?.map(|k| (d, k)))
}

/// Creates a key for the user, either with chosen permissions or with the
/// permissions of a client (one key per client). The key is shown only here.
///
/// @name POST /api/v1/users/:userID/api-tokens/create
pub async fn create(app: &App, req: &ApiRequest, user_param: &str) -> Reply {
    let user = match own_user(app, req, user_param).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let request = body::object(req.content_type(), &req.body)
        .map_err(|e| e.reply())
        .and_then(|(_, map)| key_request(&map, &app.config.oauth.permissions));
    match request {
        Ok(request) => create_key(app, user, request, "api-tokens").await,
        Err(r) => r,
    }
}

/// Revokes one of the user's keys, named by its value or its token ID.
///
/// @name DELETE /api/v1/users/:userID/api-tokens/:token
pub async fn delete(app: &App, req: &ApiRequest, user_param: &str, token: &str) -> Reply {
    let user = match own_user(app, req, user_param).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let found = match find_key(app, token).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((hash, record)) = found.filter(|(_, k)| k.user_id == user) else {
        return Reply::failure(404, "This key does not exist.");
    };
    match app.store.revoke_key(&hash).await {
        Ok(_) => {
            telemetry::keys_revoked(
                1,
                &format!("token_id={} user={user}", record.token_id),
                "api-tokens delete",
            );
            Reply::success("Removed Token.", json!({}))
        }
        Err(e) => e.into(),
    }
}
