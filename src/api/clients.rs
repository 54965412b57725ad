//! `/api/v1/clients…`: API clients, as Tachi serves them (docs/http-api.md, "Client routes").

use serde_json::{json, Map, Value};

use super::fields::{only_fields, permission_list, received};
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

/// Tachi's `IsValidURL` (`utils/misc.ts`): an absolute http or https URL,
/// or one whose scheme is `tachi-` and letters or digits, for native apps.
fn valid_url(s: &str) -> bool {
    let Ok(url) = url::Url::parse(s) else {
        return false;
    };
    match url.scheme() {
        "http" | "https" => url.has_host(),
        scheme => scheme.strip_prefix("tachi-").is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }),
    }
}

/// A refusal worded as Tachi's validator words one: `[key] message`, then
/// the value it got.
fn invalid(key: &str, message: &str, value: &Value) -> Reply {
    Reply::failure(400, format!("[{key}] {message}{}", received(value)))
}

/// A field that is absent (`None`), `null`, or a string passing `check`;
/// `message` says what else was expected.
fn optional_string(
    map: &Map<String, Value>,
    name: &str,
    message: &str,
    check: impl Fn(&str) -> bool,
) -> Result<Option<Option<String>>, Reply> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if check(s) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(invalid(name, message, other)),
    }
}

const NAME_LENGTH: &str = "Expected a string with length between 3 and 80.";

fn name_ok(s: &str) -> bool {
    (3..=80).contains(&s.chars().count())
}

/// A client's `name` when present: a string of 3 to 80 characters.
fn name_field(map: &Map<String, Value>) -> Result<Option<String>, Reply> {
    match map.get("name") {
        None => Ok(None),
        Some(Value::String(s)) if name_ok(s) => Ok(Some(s.clone())),
        Some(other) => Err(invalid("name", NAME_LENGTH, other)),
    }
}

fn any_string(_: &str) -> bool {
    true
}

/// The JSON body as an object, refusing keys outside `allowed`.
fn params(req: &ApiRequest, allowed: &[&str]) -> Result<Map<String, Value>, Reply> {
    let (_, map) = body::object(req.content_type(), &req.body).map_err(|e| e.reply())?;
    only_fields(&map, allowed)?;
    Ok(map)
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
/// secret is shown. Checked in Tachi's order (`clients/router.ts`): the
/// body's shape, then the session, then the cap (administrators are exempt),
/// then the permissions and the URLs.
///
/// @name POST /api/v1/clients/create
pub async fn create(app: &App, req: &ApiRequest) -> Reply {
    let fields = match body::object(req.content_type(), &req.body)
        .map_err(|e| e.reply())
        .and_then(|(_, map)| ClientFields::parse(&map, &app.config.oauth.permissions))
    {
        Ok(f) => f,
        Err(r) => return r,
    };
    let author = match req.caller.session("You are not authenticated.") {
        Ok(u) => u,
        Err(r) => return r,
    };
    let cap = match client_cap(app, author).await {
        Ok(cap) => cap,
        Err(r) => return r,
    };
    let (client, secret) = match fields.check().map(|f| f.into_client(author)) {
        Ok(made) => made,
        Err(r) => return r,
    };
    match app.store.insert_client(&client, cap).await {
        Ok(ClientInsert::Inserted) => {
            telemetry::client_event("created", &client.client_id, &format!("author={author}"));
            Reply::success(
                "Created a new API client.",
                views::client(&client, Some(&secret)),
            )
        }
        Ok(ClientInsert::CapReached) => cap_reached(app),
        Err(e) => e.into(),
    }
}

fn cap_reached(app: &App) -> Reply {
    Reply::failure(
        400,
        format!(
            "You have created too many API clients. The current cap is {}.",
            app.config.oauth.client_cap
        ),
    )
}

/// How many clients `author` may hold: `oauth.client_cap`, unless they are
/// a Tachi administrator (asked of the upstream only once the cap is met);
/// the refusal once they hold that many.
async fn client_cap(app: &App, author: u64) -> Result<usize, Reply> {
    let cap = app.config.oauth.client_cap;
    if app.store.clients_of(author).await?.len() < cap {
        return Ok(cap);
    }
    let admin = app
        .auth()
        .named_user(&author.to_string())
        .await
        .map_err(|r| r.reply())?
        .is_some_and(|u| u.admin);
    if admin {
        Ok(usize::MAX)
    } else {
        Err(cap_reached(app))
    }
}

/// The fields a new client is made from.
const CLIENT_FIELDS: [&str; 7] = [
    "name",
    "redirectUri",
    "webhookUri",
    "apiKeyTemplate",
    "apiKeyFilename",
    "permissions",
    "public",
];

/// A new client's fields, of the right shapes; [`ClientFields::check`] then
/// judges their values.
pub struct ClientFields {
    name: String,
    redirect_uri: Option<String>,
    webhook_uri: Option<String>,
    api_key_template: Option<String>,
    api_key_filename: Option<String>,
    permissions: Vec<String>,
    public: bool,
}

impl ClientFields {
    /// The shapes Tachi's validator checks, in its order, and then any
    /// field it does not know. (`redirectUri`, `webhookUri`,
    /// `apiKeyTemplate` and `apiKeyFilename` may be left out, meaning null.)
    pub fn parse(map: &Map<String, Value>, known: &[String]) -> Result<ClientFields, Reply> {
        let name = match map.get("name") {
            Some(Value::String(s)) if name_ok(s) => s.clone(),
            other => return Err(invalid("name", NAME_LENGTH, other.unwrap_or(&Value::Null))),
        };
        let uri = |key| optional_string(map, key, "Expected ?string or null.", any_string);
        let redirect_uri = uri("redirectUri")?.flatten();
        let webhook_uri = uri("webhookUri")?.flatten();
        let api_key_template = match map.get("apiKeyTemplate") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) if t.contains(TEMPLATE_PLACEHOLDER) => Some(t.clone()),
            Some(t @ Value::String(_)) => {
                return Err(invalid(
                    "apiKeyTemplate",
                    "Must contain %%TACHI_KEY%% as part of the template.",
                    t,
                ))
            }
            Some(_) => {
                return Err(invalid(
                    "apiKeyTemplate",
                    "Expected a string.",
                    &Value::Null,
                ))
            }
        };
        let api_key_filename = optional_string(
            map,
            "apiKeyFilename",
            "Expected ?string or null.",
            any_string,
        )?
        .flatten();
        let permissions = permission_list(map.get("permissions"), known)?;
        // The gate's own field: a public client (no secret, PKCE with S256).
        let public = match map.get("public") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) => true,
            Some(other) => return Err(invalid("public", "Expected a boolean.", other)),
        };
        only_fields(map, &CLIENT_FIELDS)?;
        Ok(ClientFields {
            name,
            redirect_uri,
            webhook_uri,
            api_key_template,
            api_key_filename,
            permissions,
            public,
        })
    }

    /// The checks Tachi makes once the caller and the cap are known.
    pub fn check(self) -> Result<ClientFields, Reply> {
        if self.permissions.is_empty() {
            return Err(Reply::failure(
                400,
                "Invalid permissions -- Need to require atleast one.",
            ));
        }
        if self.redirect_uri.as_deref().is_some_and(|u| !valid_url(u)) {
            return Err(Reply::failure(400, "Invalid Redirect URL."));
        }
        if self.webhook_uri.as_deref().is_some_and(|u| !valid_url(u)) {
            return Err(Reply::failure(400, "Invalid Webhook URL."));
        }
        Ok(self)
    }

    /// The client, with a new ID and secret (none for a public client: its
    /// stored hash matches no secret).
    pub fn into_client(self, author: u64) -> (ClientRecord, String) {
        let secret = if self.public {
            String::new()
        } else {
            new_secret()
        };
        let client = ClientRecord {
            client_id: format!("CI{}", random_hex(20)),
            secret_hash: if self.public {
                String::new()
            } else {
                digest_hex(&secret)
            },
            name: self.name,
            author,
            requested_permissions: self.permissions,
            redirect_uri: self.redirect_uri,
            webhook_uri: self.webhook_uri,
            api_key_template: self.api_key_template,
            api_key_filename: self.api_key_filename,
            created_on: now_ms(),
            public: self.public,
        };
        (client, secret)
    }
}

/// Validates a new client with Tachi's rules and makes its ID and secret
/// (for the admin API, which has no session or cap to check in between).
pub fn new_client(
    map: &Map<String, Value>,
    known: &[String],
    author: u64,
) -> Result<(ClientRecord, String), Reply> {
    Ok(ClientFields::parse(map, known)?
        .check()?
        .into_client(author))
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
        // Tachi's PATCH schema and words (`clients/router.ts`).
        let name = name_field(&map)?;
        let template = |t: &str| t.contains(TEMPLATE_PLACEHOLDER);
        Ok(ClientPatch {
            name,
            api_key_template: optional_string(
                &map,
                "apiKeyTemplate",
                "Must contain a %%TACHI_KEY%% placeholder.",
                template,
            )?,
            api_key_filename: optional_string(&map, "apiKeyFilename", NAME_LENGTH, name_ok)?,
            webhook_uri: optional_string(&map, "webhookUri", "Invalid URL.", valid_url)?,
            redirect_uri: optional_string(&map, "redirectUri", "Invalid URL.", valid_url)?,
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
    match owned_client(app, req, id).await {
        Ok(client) if client.public => {
            return Reply::failure(400, "This client is public: it has no secret to reset.")
        }
        Ok(_) => {}
        Err(r) => return r,
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
    fn urls_are_http_https_or_a_tachi_native_scheme() {
        assert!(valid_url("https://example.com/cb"));
        assert!(valid_url("http://127.0.0.1:9/x"));
        // Tachi's misc.test.ts: native apps register tachi-<name>: schemes.
        assert!(valid_url("tachi-beatoraja:callback"));
        assert!(valid_url("TACHI-Foo2:cb"));
        assert!(!valid_url("tachi-:cb"));
        assert!(!valid_url("tachi-my.app:cb"));
        assert!(!valid_url("tachi-my-app:cb"));
        assert!(!valid_url("ftp://example.com"));
        assert!(!valid_url("javascript:alert(1)"));
        assert!(!valid_url("not a url"));
        assert!(!valid_url("example.com"));
    }

    #[test]
    fn names_count_characters_not_bytes() {
        assert!(name_ok("ééé"));
        assert!(!name_ok("ab"));
        assert!(!name_ok(&"x".repeat(81)));
    }
}
