//! The admin API (docs/http-api.md, "Admin listener and API"): what operators do to clients and keys while the
//! gate runs — list, create, delete, revoke a leaked key, revoke everything of
//! a user, import from Tachi. One [`AdminOp`] per action, run by [`run`]
//! whether it arrives over the admin listener or from the command line.

pub mod listener;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::api::api_tokens::{create_key, find_key, key_request};
use crate::api::clients::{new_client, NO_SUCH_CLIENT};
use crate::api::views;
use crate::app::App;
use crate::http::reply::Reply;
use crate::store::{digest_from_hex, ClientInsert, ClientRecord, Digest, KeyRecord};
use crate::telemetry;

/// Whose keys to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    User(u64),
    Client(String),
}

/// A key in an import batch: its digest (never the key) and its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedKey {
    pub digest: String,
    pub record: KeyRecord,
}

/// Records to import, already hashed by whoever read the Tachi export.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportBatch {
    pub clients: Vec<ClientRecord>,
    pub keys: Vec<ImportedKey>,
}

/// One admin action.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminOp {
    ListClients {
        author: Option<u64>,
    },
    /// `fields` as for `POST /api/v1/clients/create`.
    CreateClient {
        author: u64,
        fields: Map<String, Value>,
    },
    GetClient(String),
    DeleteClient(String),
    ListKeys(KeyOwner),
    /// `request` as for `POST …/api-tokens/create`.
    CreateKey {
        user: u64,
        request: Map<String, Value>,
    },
    /// By token ID or key value.
    RevokeKey(String),
    RevokeUser(u64),
    Import(ImportBatch),
    /// Sign identity assertions with a new key; the old one stays published
    /// until its assertions have expired.
    RotateIdentityKey,
}

/// Percent-decodes each segment of an admin path (IDs and keys may be escaped).
pub fn decode_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn bad(msg: impl Into<String>) -> Reply {
    Reply::failure(400, msg)
}

fn query_u64(query: &Map<String, Value>, name: &str) -> Result<Option<u64>, Reply> {
    match query.get(name).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| bad(format!("{name} must be a user ID."))),
    }
}

fn take_user(body: &mut Map<String, Value>, name: &str) -> Result<u64, Reply> {
    body.remove(name)
        .and_then(|v| v.as_u64())
        .ok_or_else(|| bad(format!("{name} must be a user ID (a whole number).")))
}

impl AdminOp {
    /// Reads an admin request. `path` is below `/admin`; `body` is a JSON object.
    pub fn from_http(
        method: &http::Method,
        path: &str,
        query: &Map<String, Value>,
        mut body: Map<String, Value>,
    ) -> Result<AdminOp, Reply> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let m = method.as_str();
        let op = match (m, segs.as_slice()) {
            ("GET", ["clients"]) => AdminOp::ListClients {
                author: query_u64(query, "author")?,
            },
            ("POST", ["clients"]) => AdminOp::CreateClient {
                author: take_user(&mut body, "author")?,
                fields: body,
            },
            ("GET", ["clients", id]) => AdminOp::GetClient(id.to_string()),
            ("DELETE", ["clients", id]) => AdminOp::DeleteClient(id.to_string()),
            ("GET", ["keys"]) => match (query_u64(query, "user")?, query.get("client")) {
                (Some(u), None) => AdminOp::ListKeys(KeyOwner::User(u)),
                (None, Some(Value::String(c))) => AdminOp::ListKeys(KeyOwner::Client(c.clone())),
                _ => return Err(bad("List keys by ?user=ID or by ?client=ID.")),
            },
            ("POST", ["keys"]) => AdminOp::CreateKey {
                user: take_user(&mut body, "userID")?,
                request: body,
            },
            ("DELETE", ["keys", token]) => AdminOp::RevokeKey(token.to_string()),
            ("POST", ["users", user, "revoke-all"]) => AdminOp::RevokeUser(
                user.parse()
                    .map_err(|_| bad("The user must be a numeric user ID."))?,
            ),
            ("POST", ["identity", "rotate"]) => AdminOp::RotateIdentityKey,
            ("POST", ["import"]) => AdminOp::Import(
                serde_json::from_value(Value::Object(body))
                    .map_err(|e| bad(format!("Invalid import batch: {e}.")))?,
            ),
            _ => return Err(Reply::failure(404, "No such admin route.")),
        };
        Ok(op)
    }

    /// The request that [`AdminOp::from_http`] reads back as this operation:
    /// method, path (with query) and JSON body.
    pub fn to_http(&self) -> (http::Method, String, Option<Value>) {
        use http::Method;
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match self {
            AdminOp::ListClients { author: None } => (Method::GET, "/admin/clients".into(), None),
            AdminOp::ListClients { author: Some(a) } => {
                (Method::GET, format!("/admin/clients?author={a}"), None)
            }
            AdminOp::CreateClient { author, fields } => {
                let mut body = fields.clone();
                body.insert("author".into(), json!(author));
                (
                    Method::POST,
                    "/admin/clients".into(),
                    Some(Value::Object(body)),
                )
            }
            AdminOp::GetClient(id) => (Method::GET, format!("/admin/clients/{}", enc(id)), None),
            AdminOp::DeleteClient(id) => {
                (Method::DELETE, format!("/admin/clients/{}", enc(id)), None)
            }
            AdminOp::ListKeys(KeyOwner::User(u)) => {
                (Method::GET, format!("/admin/keys?user={u}"), None)
            }
            AdminOp::ListKeys(KeyOwner::Client(c)) => {
                (Method::GET, format!("/admin/keys?client={}", enc(c)), None)
            }
            AdminOp::CreateKey { user, request } => {
                let mut body = request.clone();
                body.insert("userID".into(), json!(user));
                (
                    Method::POST,
                    "/admin/keys".into(),
                    Some(Value::Object(body)),
                )
            }
            AdminOp::RevokeKey(t) => (Method::DELETE, format!("/admin/keys/{}", enc(t)), None),
            AdminOp::RevokeUser(u) => (Method::POST, format!("/admin/users/{u}/revoke-all"), None),
            AdminOp::Import(batch) => (
                Method::POST,
                "/admin/import".into(),
                serde_json::to_value(batch).ok(),
            ),
            AdminOp::RotateIdentityKey => (Method::POST, "/admin/identity/rotate".into(), None),
        }
    }
}

fn validate_batch(app: &App, batch: &ImportBatch) -> Result<Vec<(Digest, KeyRecord)>, Reply> {
    let known = &app.config.oauth.permissions;
    let unknown = |perms: &[String]| perms.iter().find(|p| !known.contains(p)).cloned();
    for c in &batch.clients {
        if !crate::ops::import::valid_client_id(&c.client_id) || c.secret_hash.len() != 64 {
            return Err(bad(format!(
                "Client '{}' has no ID or secret hash.",
                c.client_id
            )));
        }
        if let Some(p) = unknown(&c.requested_permissions) {
            return Err(bad(format!(
                "Client '{}' requests unknown permission '{p}'.",
                c.client_id
            )));
        }
    }
    let mut keys = Vec::with_capacity(batch.keys.len());
    for k in &batch.keys {
        let digest = digest_from_hex(&k.digest)
            .ok_or_else(|| bad("A key's digest is not 64 hex characters."))?;
        if k.record
            .from_client
            .as_deref()
            .is_some_and(|c| !crate::ops::import::valid_client_id(c))
        {
            return Err(bad(format!(
                "Key {} names an invalid client ID.",
                k.record.token_id
            )));
        }
        if let Some(p) = unknown(&k.record.permissions) {
            return Err(bad(format!(
                "Key {} has unknown permission '{p}'.",
                k.record.token_id
            )));
        }
        keys.push((digest, k.record.clone()));
    }
    Ok(keys)
}

/// Carries out an admin operation. Admins are not held to the client cap.
pub async fn run(app: &App, op: AdminOp) -> Reply {
    let known = &app.config.oauth.permissions;
    let store = &app.store;
    let result: Result<Reply, Reply> = async {
        Ok(match op {
            AdminOp::ListClients { author } => {
                let clients = match author {
                    Some(a) => store.clients_of(a).await?,
                    None => store.all_clients().await?,
                };
                views::client_list(&clients)
            }
            AdminOp::CreateClient { author, fields } => {
                let (client, secret) = new_client(&fields, known, author)?;
                match store.insert_client(&client, usize::MAX).await? {
                    ClientInsert::Inserted => {
                        telemetry::client_event(
                            "created",
                            &client.client_id,
                            &format!("author={author} via=admin"),
                        );
                        Reply::success(
                            "Created a new API client.",
                            views::client(&client, Some(&secret)),
                        )
                    }
                    ClientInsert::CapReached => Reply::failure(400, "Client cap reached."),
                }
            }
            AdminOp::GetClient(id) => crate::api::clients::get(app, &id).await,
            AdminOp::DeleteClient(id) => match store.delete_client(&id).await? {
                Some(n) => {
                    telemetry::client_event("deleted", &id, "via=admin");
                    telemetry::keys_revoked(n, &format!("client={id}"), "client deleted by admin");
                    Reply::success(
                        format!("Deleted client {id} and {n} keys."),
                        json!({"keysRevoked": n}),
                    )
                }
                None => Reply::failure(404, NO_SUCH_CLIENT),
            },
            AdminOp::ListKeys(owner) => {
                let keys = match owner {
                    KeyOwner::User(u) => store.keys_of_user(u).await?,
                    KeyOwner::Client(c) => store.keys_of_client(&c).await?,
                };
                views::key_list(&keys)
            }
            AdminOp::CreateKey { user, request } => {
                create_key(app, user, key_request(&request, known)?, "admin").await
            }
            AdminOp::RevokeKey(token) => match find_key(app, &token).await? {
                Some((digest, record)) => {
                    store.revoke_key(&digest).await?;
                    telemetry::keys_revoked(1, &format!("token_id={}", record.token_id), "admin");
                    Reply::success(
                        format!("Revoked key {}.", record.token_id),
                        views::key(&record, None),
                    )
                }
                None => Reply::failure(404, "This key does not exist."),
            },
            AdminOp::RevokeUser(user) => {
                let n = store.revoke_user_keys(user).await?;
                telemetry::keys_revoked(n, &format!("user={user}"), "admin revoke-all");
                Reply::success(
                    format!("Revoked {n} keys of user {user}."),
                    json!({"revoked": n}),
                )
            }
            AdminOp::Import(batch) => {
                let keys = validate_batch(app, &batch)?;
                let c = store.import(&batch.clients, &keys).await?;
                log::info!(
                    target: "audit",
                    "import clients_added={} keys_added={} keys_skipped={}",
                    c.clients_added,
                    c.keys_added,
                    c.keys_skipped
                );
                Reply::success(c.summary(), serde_json::to_value(c).unwrap_or_default())
            }
            AdminOp::RotateIdentityKey => rotate_identity_key(app),
        })
    }
    .await;
    result.unwrap_or_else(|r| r)
}

/// Rotates the identity signing key of a running gate: written to the key
/// file first, so that a restart keeps it.
fn rotate_identity_key(app: &App) -> Reply {
    let Some(signer) = &app.assertions else {
        return Reply::failure(
            409,
            "The gate signs no identity assertions (identity.mode is \"headers\"): there is no key to rotate.",
        );
    };
    match signer.rotate() {
        Ok(kid) => {
            log::info!(target: "audit", "identity signing key rotated kid={kid} via=admin");
            rotated(&kid, signer.jwks())
        }
        Err(e) => {
            log::error!("rotating the identity signing key failed: {e}");
            Reply::failure(
                500,
                "The new signing key could not be saved; the old one is still in use.",
            )
        }
    }
}

/// The answer to a rotation: the new key's ID and the keys published now.
pub fn rotated(kid: &str, jwks: Value) -> Reply {
    Reply::success(
        format!("Signing identity assertions with key {kid}; the previous key stays published until its assertions have expired."),
        json!({"kid": kid, "jwks": jwks}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(op: AdminOp) {
        let (method, path_query, body) = op.to_http();
        let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
        let query = crate::http::body::query_object(Some(query));
        let body = match body {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let path = path.strip_prefix("/admin").unwrap();
        let decoded = decode_path(path);
        assert_eq!(
            AdminOp::from_http(&method, &decoded, &query, body).unwrap(),
            op
        );
    }

    #[test]
    fn every_operation_survives_the_trip_over_http() {
        let fields = Map::from_iter([("name".to_string(), json!("App"))]);
        round_trip(AdminOp::ListClients { author: None });
        round_trip(AdminOp::ListClients { author: Some(3) });
        round_trip(AdminOp::CreateClient {
            author: 3,
            fields: fields.clone(),
        });
        round_trip(AdminOp::GetClient("CIab".into()));
        round_trip(AdminOp::DeleteClient("CIab".into()));
        round_trip(AdminOp::ListKeys(KeyOwner::User(4)));
        round_trip(AdminOp::ListKeys(KeyOwner::Client("CI x".into())));
        round_trip(AdminOp::CreateKey {
            user: 4,
            request: fields,
        });
        round_trip(AdminOp::RevokeKey("abc".into()));
        round_trip(AdminOp::RevokeUser(9));
        round_trip(AdminOp::Import(ImportBatch::default()));
        round_trip(AdminOp::RotateIdentityKey);
    }
}
