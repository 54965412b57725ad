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
use crate::http::request::Caller;
use crate::store::{digest, now_ms, Digest, KeyInsert, KeyRecord};
use crate::telemetry;

const NOT_BY_KEY: &str =
    "This request cannot be performed by an API key, and requires authentication.";

/// The session's user, when it is the one `:userID` names: `me`, a
/// numeric ID, or a user name in any case. Checked in Tachi's order: the
/// user the URL names first (its `GetUserFromParam`: 401 for a guest's
/// `me`, 404 for nobody), then that the caller is that user's own session
/// (`RequireSelfRequestFromUser`).
async fn own_user(app: &App, req: &ApiRequest, user_param: &str) -> Result<u64, Reply> {
    let param = percent_encoding::percent_decode_str(user_param).decode_utf8_lossy();
    let named = match (&req.caller, param.as_ref()) {
        (Caller::Guest, "me") => {
            return Err(Reply::failure(
                401,
                "Cannot use 'me' userID with no authentication.",
            ))
        }
        (Caller::Session(user), "me") => Some(*user),
        (Caller::Key(key), "me") => Some(key.user_id),
        // The caller's own ID needs no question to the upstream.
        (Caller::Session(user), p) if p == user.to_string() => Some(*user),
        (Caller::Key(key), p) if p == key.user_id.to_string() => Some(key.user_id),
        (_, p) => app
            .auth()
            .named_user(p)
            .await
            .map_err(|r| r.reply())?
            .map(|u| u.id),
    };
    let Some(named) = named else {
        return Err(Reply::failure(
            404,
            format!("The user {param} does not exist."),
        ));
    };
    match req.caller {
        Caller::Session(user) if user == named => Ok(user),
        Caller::Guest => Err(Reply::failure(
            401,
            "This endpoint requires session-level authentication.",
        )),
        _ => Err(Reply::failure(403, NOT_BY_KEY)),
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

/// The identifier of a custom key created without one (Tachi's default).
const DEFAULT_IDENTIFIER: &str = "Custom Token";

/// Reads a key creation as Tachi does (`api-tokens/router.ts`): `clientID`
/// for a client's key (any `identifier` is ignored: the key is named after
/// the client), or `permissions` with an optional `identifier` (any string;
/// "Custom Token" when left out), never both.
pub fn key_request(map: &Map<String, Value>, known: &[String]) -> Result<KeyRequest, Reply> {
    only_fields(map, &KEY_FIELDS)?;
    let identifier = match map.get("identifier") {
        None => DEFAULT_IDENTIFIER.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(Reply::failure(
                400,
                "[identifier] Expected *string or no value.",
            ))
        }
    };
    match (map.get("clientID"), map.get("permissions")) {
        (Some(_), Some(_)) => Err(Reply::failure(
            400,
            "Cannot use ClientID creation and permissions creation at the same time!",
        )),
        (Some(Value::String(id)), None) => Ok(KeyRequest::FromClient(id.clone())),
        (Some(_), None) => Err(Reply::failure(
            400,
            "[clientID] Expected *string or no value.",
        )),
        (None, None) => Err(Reply::failure(
            400,
            "Invalid request, must specify either clientID or permissions.",
        )),
        (None, Some(list)) => Ok(KeyRequest::Custom {
            identifier,
            permissions: permission_list(Some(list), known)?,
        }),
    }
}

/// Makes and stores a key for `user`, answering it once. Asked again for a
/// client's key (Tachi's client-file page, visited from a second machine),
/// it answers as Tachi does, "Returned existing key", with a new key: the
/// gate keeps only digests, so the first cannot be shown again, and it keeps
/// working where it is in use. Both are listed on the user's keys page.
pub async fn create_key(app: &App, user: u64, request: KeyRequest, via: &str) -> Reply {
    if let Err(refusal) = key_room(app, user).await {
        return refusal;
    }
    let minted = match request {
        KeyRequest::FromClient(id) => match app.store.client(&id).await {
            // Named after the client, as Tachi names it.
            Ok(Some(client)) => {
                KeyRecord::mint_for_client(user, &client, client.name.clone(), now_ms())
            }
            Ok(None) => return Reply::failure(404, NO_SUCH_CLIENT),
            Err(e) => return e.into(),
        },
        KeyRequest::Custom {
            identifier,
            permissions,
        } => KeyRecord::mint(user, identifier, &permissions, None, now_ms()),
    };
    let description = match app.store.insert_key(&minted.digest, &minted.record).await {
        Ok(KeyInsert::Inserted) => "Successfully created new API Token.",
        Ok(KeyInsert::InsertedAgain) => "Returned existing key",
        Ok(KeyInsert::NoSuchClient) => return Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => return e.into(),
    };
    telemetry::key_issued(minted.record.audited(), via);
    Reply::success(description, views::key(&minted.record, Some(&minted.key)))
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

/// Finds a key by its token ID (bare, or as the key list's `token` shows
/// it: see [`views::key`]) or its value.
pub async fn find_key(app: &App, token: &str) -> Result<Option<(Digest, Arc<KeyRecord>)>, Reply> {
    let token_id = token
        .strip_prefix(views::LISTED_TOKEN_PREFIX)
        .unwrap_or(token);
    if let Some(found) = app.store.key_by_token_id(token_id).await? {
        return Ok(Some(found));
    }
    let d = digest(token);
    Ok(app.store.key(&d).await?.map(|k| (d, k)))
}

/// Creates a key for the user, either with chosen permissions or with the
/// permissions of a client (see [`create_key`]). The key is shown only here.
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
