//! `POST /api/v1/oauth/token`: exchanging a code for an API key.

use serde_json::{json, Map, Value};

use crate::app::{ApiRequest, App};
use crate::body::{self, Format};
use crate::gate::credentials::{basic_credentials, Authorization};
use crate::reply::Reply;
use crate::store::{
    digest, digests_match, now_ms, random_hex, ClientRecord, CodeRecord, KeyRecord, Redeem,
};

use super::{pkce, string_param};

/// How errors are answered: Tachi's statuses for its JSON integrators,
/// RFC 6749's for form bodies and whenever HTTP Basic was used (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Tachi,
    Rfc6749,
}

/// The rows of SPEC §4's status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    InvalidRequest,
    UnsupportedGrantType,
    UnknownClient,
    WrongSecret,
    RedirectMismatch,
    BadCode,
    BadVerifier,
}

impl Failure {
    /// The RFC 6749 §5.2 `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Failure::InvalidRequest => "invalid_request",
            Failure::UnsupportedGrantType => "unsupported_grant_type",
            Failure::UnknownClient | Failure::WrongSecret => "invalid_client",
            Failure::RedirectMismatch | Failure::BadCode | Failure::BadVerifier => "invalid_grant",
        }
    }

    /// The status for this failure in this style.
    pub fn status(self, style: Style) -> u16 {
        match (self, style) {
            (Failure::UnknownClient, Style::Tachi) => 404,
            (Failure::WrongSecret, Style::Tachi) => 403,
            (Failure::UnknownClient | Failure::WrongSecret, Style::Rfc6749) => 401,
            (Failure::BadCode, Style::Tachi) => 404,
            _ => 400,
        }
    }
}

/// A failed exchange: which row of the table, and the words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub failure: Failure,
    pub description: String,
}

fn fail<T>(failure: Failure, description: impl Into<String>) -> Result<T, TokenError> {
    Err(TokenError {
        failure,
        description: description.into(),
    })
}

/// The token endpoint's parameters, typed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TokenParams {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code_verifier: Option<String>,
}

impl TokenParams {
    /// Reads the parameters from a parsed body; a present non-string is an error.
    pub fn from_object(map: &Map<String, Value>) -> Result<TokenParams, TokenError> {
        let get = |name: &str| {
            string_param(map, name).map_err(|d| TokenError {
                failure: Failure::InvalidRequest,
                description: d,
            })
        };
        Ok(TokenParams {
            grant_type: get("grant_type")?,
            code: get("code")?,
            redirect_uri: get("redirect_uri")?,
            client_id: get("client_id")?,
            client_secret: get("client_secret")?,
            code_verifier: get("code_verifier")?,
        })
    }
}

/// Works out the answer style and the parameters from the raw request.
pub fn parse_request(req: &ApiRequest) -> (Style, Result<TokenParams, TokenError>) {
    let basic = matches!(req.authorization(), Some(Authorization::Basic(_)));
    let format = body::format_of(req.content_type(), &req.body);
    let style = if basic || format == Ok(Some(Format::Form)) {
        Style::Rfc6749
    } else {
        Style::Tachi
    };
    let params = match format {
        Ok(Some(Format::Json)) => body::json_object(&req.body),
        Ok(Some(Format::Form)) => body::form_object(&req.body),
        Ok(None) => {
            return (
                style,
                fail(
                    Failure::InvalidRequest,
                    "Send the parameters as a JSON or application/x-www-form-urlencoded body.",
                ),
            )
        }
        Err(e) => Err(e),
    };
    let params = params
        .map_err(|e| TokenError {
            failure: Failure::InvalidRequest,
            description: e.describe(),
        })
        .and_then(|m| TokenParams::from_object(&m));
    (style, params)
}

/// The client's credentials, from HTTP Basic or the body but never both.
pub fn client_credentials(
    auth: Option<Authorization<'_>>,
    params: &TokenParams,
) -> Result<(String, String), TokenError> {
    match auth {
        Some(Authorization::Basic(encoded)) => {
            let Some((id, secret)) = basic_credentials(encoded) else {
                return fail(Failure::UnknownClient, "Malformed HTTP Basic client credentials.");
            };
            if params.client_secret.is_some() {
                return fail(
                    Failure::InvalidRequest,
                    "Authenticate the client with HTTP Basic or with client_secret in the body, not both.",
                );
            }
            if params.client_id.as_ref().is_some_and(|body_id| *body_id != id) {
                return fail(
                    Failure::InvalidRequest,
                    "client_id in the body differs from the HTTP Basic client.",
                );
            }
            Ok((id, secret))
        }
        Some(_) => fail(
            Failure::UnknownClient,
            "Unsupported client authentication: use HTTP Basic or client_id and client_secret in the body.",
        ),
        None => match (&params.client_id, &params.client_secret) {
            (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
            (None, _) => fail(Failure::InvalidRequest, "client_id is required."),
            (_, None) => fail(Failure::InvalidRequest, "client_secret is required."),
        },
    }
}

/// Checks everything about a code except whether it is still unspent in the store.
pub fn check_code(
    code: &CodeRecord,
    client: &ClientRecord,
    verifier: Option<&str>,
    now_ms: u64,
) -> Result<(), TokenError> {
    if now_ms >= code.expires_at {
        return fail(Failure::BadCode, "This code has expired.");
    }
    if code
        .client_id
        .as_ref()
        .is_some_and(|c| *c != client.client_id)
    {
        return fail(Failure::BadCode, "This code was issued for another client.");
    }
    match (&code.challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => fail(
            Failure::BadVerifier,
            "code_verifier was sent, but this code was created without a code_challenge.",
        ),
        (Some(_), None) => fail(Failure::BadVerifier, "This code requires a code_verifier."),
        (Some(_), Some(v)) if !pkce::well_formed(v) => fail(
            Failure::BadVerifier,
            "Malformed code_verifier: it must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' or '~'.",
        ),
        (Some(c), Some(v)) if !pkce::verifies(c, v) => fail(
            Failure::BadVerifier,
            "The code_verifier does not match the code's challenge.",
        ),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// Exchanges a code for an API key. The client is authenticated before the
/// code is looked at, so a failed authentication never touches a code; the
/// code is spent only by a successful exchange, atomically, by one winner.
///
/// @name POST /api/v1/oauth/token
pub async fn token(app: &App, req: &ApiRequest) -> Reply {
    let (style, params) = parse_request(req);
    let basic = matches!(req.authorization(), Some(Authorization::Basic(_)));
    let outcome = match params {
        Ok(params) => exchange(app, req, &params).await,
        Err(e) => Err(Outcome::Failed(e)),
    };
    let reply = match outcome {
        Ok(reply) => reply,
        Err(Outcome::Store(reply)) => reply,
        Err(Outcome::Failed(e)) => error_reply(&e, style, basic),
    };
    reply
        .header("Cache-Control", "no-store")
        .header("Pragma", "no-cache")
}

enum Outcome {
    Failed(TokenError),
    /// The store failed: not the caller's fault, answered as such.
    Store(Reply),
}

fn refuse(failure: Failure, description: impl Into<String>) -> Outcome {
    Outcome::Failed(TokenError {
        failure,
        description: description.into(),
    })
}

impl From<TokenError> for Outcome {
    fn from(e: TokenError) -> Self {
        Outcome::Failed(e)
    }
}

impl From<crate::store::StoreError> for Outcome {
    fn from(e: crate::store::StoreError) -> Self {
        Outcome::Store(e.into())
    }
}

/// An error in both vocabularies: Tachi's envelope and RFC 6749 §5.2.
pub fn error_reply(e: &TokenError, style: Style, basic: bool) -> Reply {
    let status = e.failure.status(style);
    let reply = Reply::failure(status, e.description.clone())
        .field("error", e.failure.code())
        .field("error_description", e.description.clone());
    if status == 401 && basic {
        reply.header("WWW-Authenticate", "Basic realm=\"tachi\"")
    } else {
        reply
    }
}

async fn exchange(app: &App, req: &ApiRequest, params: &TokenParams) -> Result<Reply, Outcome> {
    let Some(grant_type) = &params.grant_type else {
        return Err(refuse(Failure::InvalidRequest, "grant_type is required."));
    };
    if grant_type != "authorization_code" {
        return Err(refuse(
            Failure::UnsupportedGrantType,
            "Only the authorization_code grant_type is supported.",
        ));
    }
    let Some(code) = &params.code else {
        return Err(refuse(Failure::InvalidRequest, "code is required."));
    };
    let (client_id, secret) = client_credentials(req.authorization(), params)?;

    let Some(client) = app.store.client(&client_id).await? else {
        return Err(refuse(
            Failure::UnknownClient,
            "This client does not exist.",
        ));
    };
    let stored = hex::decode(&client.secret_hash)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok());
    if !stored.is_some_and(|h| digests_match(&h, &digest(&secret))) {
        return Err(refuse(Failure::WrongSecret, "Invalid secret."));
    }
    if params.redirect_uri != client.redirect_uri {
        return Err(refuse(
            Failure::RedirectMismatch,
            format!(
                "This redirect_uri does not match with your registered client redirect_uri {}.",
                client.redirect_uri.as_deref().unwrap_or("(none)")
            ),
        ));
    }

    let code_hash = digest(code);
    let now = now_ms();
    let Some(record) = app.store.code(&code_hash).await? else {
        return Err(refuse(Failure::BadCode, "This code does not exist."));
    };
    if let Some(spent) = &record.redeemed {
        // RFC 6749 §4.1.2: a replayed code revokes what it produced. Only the
        // client that spent it may trigger that, so nobody else can revoke its keys.
        if spent.client_id == client.client_id {
            let revoked = app.store.revoke_code_keys(&code_hash).await?;
            log::warn!(
                "code replayed by client {}: {revoked} key(s) issued from it revoked",
                client.client_id
            );
        }
        return Err(refuse(Failure::BadCode, "This code has already been used."));
    }
    check_code(&record, &client, params.code_verifier.as_deref(), now)?;

    let key = random_hex(20);
    let mut permissions = client.requested_permissions.clone();
    permissions.sort();
    permissions.dedup();
    let key_record = KeyRecord {
        token_id: random_hex(12),
        user_id: record.user_id,
        identifier: format!("{} Token", client.name),
        permissions,
        from_client: Some(client.client_id.clone()),
        created_on: now,
    };
    match app
        .store
        .redeem_code(&code_hash, &digest(&key), &key_record, now)
        .await?
    {
        Redeem::Issued => {}
        Redeem::Lost => return Err(refuse(Failure::BadCode, "This code has already been used.")),
    }
    log::info!(
        "issued key {} for user {} through client {}",
        key_record.token_id,
        key_record.user_id,
        client.client_id
    );
    Ok(success(&key, &key_record))
}

fn success(key: &str, record: &KeyRecord) -> Reply {
    let permissions: Map<String, Value> = record
        .permissions
        .iter()
        .map(|p| (p.clone(), Value::Bool(true)))
        .collect();
    Reply::success(
        "Successfully authenticated.",
        json!({
            "userID": record.user_id,
            "token": key,
            "identifier": record.identifier,
            "permissions": permissions,
            "fromAPIClient": record.from_client,
        }),
    )
    .field("access_token", key)
    .field("token_type", "Bearer")
    .field("scope", record.permissions.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_matches_the_spec() {
        use Failure::*;
        let rows = [
            (InvalidRequest, 400, 400),
            (UnsupportedGrantType, 400, 400),
            (UnknownClient, 404, 401),
            (WrongSecret, 403, 401),
            (RedirectMismatch, 400, 400),
            (BadCode, 404, 400),
            (BadVerifier, 400, 400),
        ];
        for (f, tachi, rfc) in rows {
            assert_eq!(f.status(Style::Tachi), tachi, "{f:?}");
            assert_eq!(f.status(Style::Rfc6749), rfc, "{f:?}");
        }
    }

    fn params(id: Option<&str>, secret: Option<&str>) -> TokenParams {
        TokenParams {
            client_id: id.map(String::from),
            client_secret: secret.map(String::from),
            ..TokenParams::default()
        }
    }

    #[test]
    fn basic_and_body_secret_together_are_refused() {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::STANDARD.encode("CI1:s");
        let auth = Some(Authorization::Basic(enc.as_bytes()));
        assert_eq!(
            client_credentials(auth, &params(None, Some("s")))
                .unwrap_err()
                .failure,
            Failure::InvalidRequest
        );
        assert_eq!(
            client_credentials(auth, &params(Some("CI2"), None))
                .unwrap_err()
                .failure,
            Failure::InvalidRequest
        );
        assert_eq!(
            client_credentials(auth, &params(Some("CI1"), None)).unwrap(),
            ("CI1".to_string(), "s".to_string())
        );
    }

    #[test]
    fn body_credentials_need_both_parts() {
        assert!(client_credentials(None, &params(Some("a"), Some("b"))).is_ok());
        assert_eq!(
            client_credentials(None, &params(Some("a"), None))
                .unwrap_err()
                .failure,
            Failure::InvalidRequest
        );
    }
}
