//! `/api/v1/clients…`: API clients, as Tachi serves them (docs/http-api.md, "Client routes").

use serde_json::{json, Map, Value};

use super::fields::{only_fields, permission_list};
use crate::api::views;
use crate::app::App;
use crate::http::body;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest_hex, now_ms, random_hex, ClientInsert, ClientRecord};
use crate::telemetry;

const NOT_A_SESSION: &str = "You are not authenticated (for a session-level request, atleast).";
/// The answer to a client ID that names no client, wherever one is looked up.
pub const NO_SUCH_CLIENT: &str = "This client does not exist.";
const TEMPLATE_PLACEHOLDER: &str = "%%TACHI_KEY%%";

fn new_secret() -> String {
    format!("CS{}", random_hex(20))
}

/// Tachi's `IsValidURL`: an absolute http or https URL.
fn valid_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// The JSON body as an object, refusing keys outside `allowed`.
fn params(req: &ApiRequest, allowed: &[&str]) -> Result<Map<String, Value>, Reply> {
    let (_, map) = body::object(req.content_type(), &req.body).map_err(|e| e.reply())?;
    only_fields(&map, allowed)?;
    Ok(map)
}

/// A field that is absent, `null`, or a string passing `check`.
fn optional_string(
    map: &Map<String, Value>,
    name: &str,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Option<Option<String>>, Reply> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => match check(s) {
            Ok(()) => Ok(Some(Some(s.clone()))),
            Err(e) => Err(Reply::failure(400, format!("Invalid {name}: {e}"))),
        },
        Some(_) => Err(Reply::failure(
            400,
            format!("Invalid {name}: expected a string or null."),
        )),
    }
}

/// A client's `name` when present: a string of 3 to 80 characters.
fn name_field(map: &Map<String, Value>) -> Result<Option<String>, Reply> {
    match map.get("name") {
        None => Ok(None),
        Some(Value::String(s)) => {
            check_name(s).map_err(|e| Reply::failure(400, format!("Invalid name: {e}")))?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Reply::failure(
            400,
            "Invalid name: expected a string of 3 to 80 characters.",
        )),
    }
}

fn check_name(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if (3..=80).contains(&n) {
        Ok(())
    } else {
        Err("must be 3 to 80 characters long.".into())
    }
}

fn check_url(s: &str) -> Result<(), String> {
    if valid_url(s) {
        Ok(())
    } else {
        Err("must be an http or https URL.".into())
    }
}

fn check_template(s: &str) -> Result<(), String> {
    if s.contains(TEMPLATE_PLACEHOLDER) {
        Ok(())
    } else {
        Err(format!("must contain {TEMPLATE_PLACEHOLDER}."))
    }
}

fn any_string(_: &str) -> Result<(), String> {
    Ok(())
}

/// The session's client, or the answer refusing it (404, then 401, then 403, as Tachi).
async fn owned_client(app: &App, req: &ApiRequest, id: &str) -> Result<ClientRecord, Reply> {
    let client = match app.store.client(id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(Reply::failure(404, NO_SUCH_CLIENT)),
        Err(e) => return Err(e.into()),
    };
    if req.caller.session(NOT_A_SESSION)? != client.author {
        return Err(Reply::failure(
            403,
            "You are not authorized to perform this action.",
        ));
    }
    Ok(client)
}

/// The caller's clients, without secrets.
///
/// @name GET /api/v1/clients
pub async fn list(app: &App, req: &ApiRequest) -> Reply {
    let user = match req.caller.session(NOT_A_SESSION) {
        Ok(u) => u,
        Err(r) => return r,
    };
    match app.store.clients_of(user).await {
        Ok(clients) => views::client_list(&clients),
        Err(e) => e.into(),
    }
}

/// Creates a client for the session's user; the answer is the only time the
/// secret is shown.
///
/// @name POST /api/v1/clients/create
pub async fn create(app: &App, req: &ApiRequest) -> Reply {
    let author = match req.caller.session("You are not authenticated.") {
        Ok(u) => u,
        Err(r) => return r,
    };
    match build_client(app, req, author) {
        Ok((client, secret)) => match app
            .store
            .insert_client(&client, app.config.oauth.client_cap)
            .await
        {
            Ok(ClientInsert::Inserted) => {
                telemetry::client_event("created", &client.client_id, &format!("author={author}"));
                Reply::success(
                    "Created a new API client.",
                    views::client(&client, Some(&secret)),
                )
            }
            Ok(ClientInsert::CapReached) => Reply::failure(
                400,
                format!(
                    "You have created too many API clients. The current cap is {}.",
                    app.config.oauth.client_cap
                ),
            ),
            Err(e) => e.into(),
        },
        Err(r) => r,
    }
}

/// The fields a new client is made from.
const CLIENT_FIELDS: [&str; 6] = [
    "name",
    "redirectUri",
    "webhookUri",
    "apiKeyTemplate",
    "apiKeyFilename",
    "permissions",
];

fn build_client(app: &App, req: &ApiRequest, author: u64) -> Result<(ClientRecord, String), Reply> {
    let (_, map) = body::object(req.content_type(), &req.body).map_err(|e| e.reply())?;
    new_client(&map, &app.config.oauth.permissions, author)
}

/// Validates a new client with Tachi's rules (no fields outside
/// [`CLIENT_FIELDS`]) and makes its ID and secret.
pub fn new_client(
    map: &Map<String, Value>,
    known: &[String],
    author: u64,
) -> Result<(ClientRecord, String), Reply> {
    only_fields(map, &CLIENT_FIELDS)?;
    let Some(name) = name_field(map)? else {
        return Err(Reply::failure(
            400,
            "Invalid name: expected a string of 3 to 80 characters.",
        ));
    };
    let redirect_uri = optional_string(map, "redirectUri", check_url)?.flatten();
    let webhook_uri = optional_string(map, "webhookUri", check_url)?.flatten();
    let api_key_template = optional_string(map, "apiKeyTemplate", check_template)?.flatten();
    let api_key_filename = optional_string(map, "apiKeyFilename", any_string)?.flatten();
    let permissions = permission_list(map.get("permissions"), known)?;
    if permissions.is_empty() {
        return Err(Reply::failure(
            400,
            "Invalid permissions -- Need to require atleast one.",
        ));
    }
    let secret = new_secret();
    let client = ClientRecord {
        client_id: format!("CI{}", random_hex(20)),
        secret_hash: digest_hex(&secret),
        name,
        author,
        requested_permissions: permissions,
        redirect_uri,
        webhook_uri,
        api_key_template,
        api_key_filename,
        created_on: now_ms(),
    };
    Ok((client, secret))
}

/// Anyone may look a client up; never with its secret.
///
/// @name GET /api/v1/clients/:clientID
pub async fn get(app: &App, id: &str) -> Reply {
    match app.store.client(id).await {
        Ok(Some(c)) => Reply::success(
            format!("Retrieved client {}.", c.name),
            views::client(&c, None),
        ),
        Ok(None) => Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => e.into(),
    }
}

/// Changes a client's name, URIs or key template; its permissions are fixed.
///
/// @name PATCH /api/v1/clients/:clientID
pub async fn patch(app: &App, req: &ApiRequest, id: &str) -> Reply {
    if let Err(r) = owned_client(app, req, id).await {
        return r;
    }
    let patch = match ClientPatch::from_request(req) {
        Ok(p) if p.is_empty() => return Reply::failure(400, "No changes to make."),
        Ok(p) => p,
        Err(r) => return r,
    };
    match app.store.modify_client(id, &|c| patch.apply(c)).await {
        Ok(Some(client)) => Reply::success("Updated client.", views::client(&client, None)),
        Ok(None) => Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => e.into(),
    }
}

/// The changes a PATCH asks for: `None` leaves a field as it is.
#[derive(Debug, Default)]
struct ClientPatch {
    name: Option<String>,
    api_key_template: Option<Option<String>>,
    api_key_filename: Option<Option<String>>,
    webhook_uri: Option<Option<String>>,
    redirect_uri: Option<Option<String>>,
}

impl ClientPatch {
    fn from_request(req: &ApiRequest) -> Result<ClientPatch, Reply> {
        let map = params(
            req,
            &[
                "name",
                "apiKeyTemplate",
                "apiKeyFilename",
                "webhookUri",
                "redirectUri",
            ],
        )?;
        let name = name_field(&map)?;
        Ok(ClientPatch {
            name,
            api_key_template: optional_string(&map, "apiKeyTemplate", check_template)?,
            api_key_filename: optional_string(&map, "apiKeyFilename", check_name)?,
            webhook_uri: optional_string(&map, "webhookUri", check_url)?,
            redirect_uri: optional_string(&map, "redirectUri", check_url)?,
        })
    }

    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.api_key_template.is_none()
            && self.api_key_filename.is_none()
            && self.webhook_uri.is_none()
            && self.redirect_uri.is_none()
    }

    fn apply(&self, c: &mut ClientRecord) {
        if let Some(v) = &self.name {
            c.name = v.clone();
        }
        if let Some(v) = &self.api_key_template {
            c.api_key_template = v.clone();
        }
        if let Some(v) = &self.api_key_filename {
            c.api_key_filename = v.clone();
        }
        if let Some(v) = &self.webhook_uri {
            c.webhook_uri = v.clone();
        }
        if let Some(v) = &self.redirect_uri {
            c.redirect_uri = v.clone();
        }
    }
}

/// A new secret; keys already issued stay valid (RFC 6749 does not tie them to it).
///
/// @name POST /api/v1/clients/:clientID/reset-secret
pub async fn reset_secret(app: &App, req: &ApiRequest, id: &str) -> Reply {
    if let Err(r) = owned_client(app, req, id).await {
        return r;
    }
    let secret = new_secret();
    let hash = digest_hex(&secret);
    match app
        .store
        .modify_client(id, &|c| c.secret_hash = hash.clone())
        .await
    {
        Ok(Some(client)) => {
            telemetry::client_event("secret-reset", &client.client_id, "");
            Reply::success("Reset secret.", views::client(&client, Some(&secret)))
        }
        Ok(None) => Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => e.into(),
    }
}

/// Deletes the client and every key issued through it.
///
/// @name DELETE /api/v1/clients/:clientID
pub async fn delete(app: &App, req: &ApiRequest, id: &str) -> Reply {
    let client = match owned_client(app, req, id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    match app.store.delete_client(id).await {
        Ok(Some(keys)) => {
            telemetry::client_event("deleted", id, "");
            telemetry::keys_revoked(keys, &format!("client={id}"), "client deleted");
            Reply::success(
                format!("Deleted {} ({}).", client.name, client.client_id),
                json!({}),
            )
        }
        Ok(None) => Reply::failure(404, NO_SUCH_CLIENT),
        Err(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https() {
        assert!(valid_url("https://example.com/cb"));
        assert!(valid_url("http://127.0.0.1:9/x"));
        assert!(!valid_url("ftp://example.com"));
        assert!(!valid_url("javascript:alert(1)"));
        assert!(!valid_url("not a url"));
    }

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(check_name("ééé").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name(&"x".repeat(81)).is_err());
    }
}
