//! How clients and keys are shown in answers: Tachi's field names, and never a
//! secret unless it was just made.

use serde_json::{json, Map, Value};

use crate::http::reply::Reply;
use crate::store::{ClientRecord, KeyRecord};

/// A client as Tachi shows it; `secret` only when freshly made (a public
/// client has none: `clientSecret` is then null). `public` is the gate's
/// own field.
pub fn client(c: &ClientRecord, secret: Option<&str>) -> Value {
    let mut v = json!({
        "clientID": c.client_id,
        "name": c.name,
        "author": c.author,
        "requestedPermissions": c.requested_permissions,
        "redirectUri": c.redirect_uri,
        "webhookUri": c.webhook_uri,
        "apiKeyTemplate": c.api_key_template,
        "apiKeyFilename": c.api_key_filename,
        "public": c.public,
    });
    if let (Some(s), Some(obj)) = (secret, v.as_object_mut()) {
        let shown = match c.public {
            true => Value::Null,
            false => Value::String(s.to_string()),
        };
        obj.insert("clientSecret".into(), shown);
    }
    v
}

/// Tachi's permissions object: `["a", "b"]` → `{"a": true, "b": true}`.
pub fn permissions(list: &[String]) -> Value {
    Value::Object(
        list.iter()
            .map(|p| (p.clone(), Value::Bool(true)))
            .collect::<Map<String, Value>>(),
    )
}

/// What a listed key shows as its `token`, before its token ID. Tachi's keys
/// page reveals `token` on a click and deletes with it; the gate keeps only
/// digests, so it shows a value that names the key without being it (and
/// cannot be mistaken for one), which the delete route accepts.
pub const LISTED_TOKEN_PREFIX: &str = "tokenID:";

/// A key as Tachi's api-tokens routes show it: the key itself as `token`
/// only when freshly made, else its token ID as [`LISTED_TOKEN_PREFIX`] says.
pub fn key(k: &KeyRecord, key: Option<&str>) -> Value {
    let mut v = json!({
        "tokenID": k.token_id,
        "userID": k.user_id,
        "identifier": k.identifier,
        "permissions": permissions(&k.permissions),
        "fromAPIClient": k.from_client,
        "createdOn": k.created_on,
    });
    let token = match key {
        Some(secret) => secret.to_string(),
        None => format!("{LISTED_TOKEN_PREFIX}{}", k.token_id),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("token".into(), Value::String(token));
    }
    v
}

/// The answer listing clients (without secrets), for the API and the admin API alike.
pub fn client_list(clients: &[ClientRecord]) -> Reply {
    Reply::success(
        format!("Returned {} clients.", clients.len()),
        Value::Array(clients.iter().map(|c| client(c, None)).collect()),
    )
}

/// The answer listing keys (never the keys themselves), for the API and the admin API alike.
pub fn key_list(keys: &[KeyRecord]) -> Reply {
    Reply::success(
        format!("Returned {} keys.", keys.len()),
        Value::Array(keys.iter().map(|k| key(k, None)).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_without_their_secret_unless_new() {
        let k = KeyRecord {
            token_id: "t".into(),
            user_id: 1,
            identifier: "i".into(),
            permissions: vec!["a".into()],
            from_client: None,
            created_on: 2,
            memo: Default::default(),
        };
        // Listed, `token` names the key by its token ID, for Tachi's delete
        // button; it is never the key.
        assert_eq!(key(&k, None)["token"], "tokenID:t");
        assert_eq!(key(&k, Some("s"))["token"], "s");
        assert_eq!(key(&k, None)["permissions"], json!({"a": true}));
    }
}
