//! `POST /api/v1/oauth/token`: exchanging a code for an API key.

use serde_json::{json, Map, Value};

use crate::api::views;
use crate::app::App;
use crate::http::body::{self, Format};
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest, now_ms, ClientRecord, CodeRecord, Digest, KeyRecord, Redeem};
use crate::telemetry;

use super::client_auth::{
    authenticate, fail, outcome_reply, refuse, unknown_client, uses_basic, Failure, OAuthError,
    Outcome, Style,
};
use super::{pkce, string_param};

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
    pub fn from_object(map: &Map<String, Value>) -> Result<TokenParams, OAuthError> {
        let get = |name: &str| {
            string_param(map, name).map_err(|d| OAuthError {
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

/// Works out the answer style and the parameters from the raw request;
/// `basic` says whether it authenticated with HTTP Basic.
fn parse_request(req: &ApiRequest, basic: bool) -> (Style, Result<TokenParams, OAuthError>) {
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
        .map_err(|e| OAuthError {
            failure: Failure::InvalidRequest,
            description: e.describe(),
        })
        .and_then(|m| TokenParams::from_object(&m));
    (style, params)
}

/// The `redirect_uri` rule. A code from the standard authorization endpoint
/// whose request sent a `redirect_uri` needs the same one here (RFC 6749
/// §4.1.3: missing is `invalid_request`); one whose request sent none may
/// leave it out. Any other code follows Tachi: the client's registered URI,
/// exactly. Checked before the code is known to exist, as Tachi checks it.
fn check_redirect(
    params: &TokenParams,
    client: &ClientRecord,
    code: Option<&CodeRecord>,
) -> Result<(), OAuthError> {
    let expected = match code.and_then(|c| c.authorization.as_ref()) {
        Some(granted) => match (&granted.redirect_uri, &params.redirect_uri) {
            (Some(_), None) => {
                return fail(
                    Failure::InvalidRequest,
                    "redirect_uri is required: the authorization request sent one.",
                )
            }
            (Some(sent), Some(_)) => Some(sent),
            (None, None) => return Ok(()),
            (None, Some(_)) => client.redirect_uri.as_ref(),
        },
        None => client.redirect_uri.as_ref(),
    };
    if params.redirect_uri.as_ref() != expected {
        return fail(
            Failure::RedirectMismatch,
            format!(
                "This redirect_uri does not match with your registered client redirect_uri {}.",
                client.redirect_uri.as_deref().unwrap_or("(none)")
            ),
        );
    }
    Ok(())
}

/// Checks everything about a code except whether it is still unspent in the store.
fn check_code(
    code: &CodeRecord,
    client: &ClientRecord,
    verifier: Option<&str>,
    now_ms: u64,
) -> Result<(), OAuthError> {
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
    // A public client proves nothing but PKCE: its codes always carry an
    // S256 challenge (a `plain` one would be no proof to an eavesdropper).
    let s256 = code
        .challenge
        .as_ref()
        .is_some_and(|c| c.method == crate::store::PkceMethod::S256);
    if client.public && !s256 {
        return fail(
            Failure::BadVerifier,
            "A public client's code must carry a PKCE challenge with the S256 method.",
        );
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
    let basic = uses_basic(req);
    let (style, params) = parse_request(req, basic);
    let outcome = match params {
        Ok(params) => exchange(app, req, &params).await,
        Err(e) => Err(Outcome::Failed(e)),
    };
    let reply = outcome.unwrap_or_else(|o| outcome_reply(o, style));
    reply
        .header("Cache-Control", "no-store")
        .header("Pragma", "no-cache")
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
    let client = authenticate(
        app,
        req,
        params.client_id.as_deref(),
        params.client_secret.as_deref(),
    )
    .await?;
    let code_hash = digest(code);
    let now = now_ms();
    let record = app.store.code(&code_hash).await?;
    check_redirect(params, &client, record.as_ref())?;
    let Some(record) = record else {
        return Err(refuse(Failure::BadCode, "This code does not exist."));
    };
    if record.redeemed.is_some() {
        return Err(replayed(app, &code_hash, &record, &client).await);
    }
    check_code(&record, &client, params.code_verifier.as_deref(), now)?;
    let cap = app.config.oauth.keys_per_user;
    if app.store.key_count_of_user(record.user_id).await? >= cap {
        return Err(refuse(
            Failure::InvalidRequest,
            format!("The user has too many API keys (at most {cap}); they must delete one first."),
        ));
    }

    // Named as Tachi's token route names it (`oauth/router.ts`), with the
    // permissions the user granted when the code came from the standard
    // authorization endpoint (a subset of the client's).
    let identifier = format!("{} Token", client.name);
    let minted = match &record.authorization {
        Some(granted) => KeyRecord::mint(
            record.user_id,
            identifier,
            &granted.scope,
            Some(client.client_id.clone()),
            now,
        ),
        None => KeyRecord::mint_for_client(record.user_id, &client, identifier, now),
    };
    match app
        .store
        .redeem_code(&code_hash, &minted.digest, &minted.record, now)
        .await?
    {
        Redeem::Issued => {}
        // Spent (or expired) between the read above and the exchange, or the
        // client was deleted meanwhile: answer exactly as if the reads above
        // had already seen it so.
        Redeem::Lost => {
            let now_spent = app.store.code(&code_hash).await?;
            if let Some(spent) = now_spent.filter(|c| c.redeemed.is_some()) {
                return Err(replayed(app, &code_hash, &spent, &client).await);
            }
            if app.store.client(&client.client_id).await?.is_none() {
                return Err(unknown_client());
            }
            return Err(refuse(Failure::BadCode, "This code does not exist."));
        }
    }
    telemetry::key_issued(minted.record.audited(), "token exchange");
    Ok(success(&minted.key, &minted.record))
}

/// A spent code presented again: the keys it produced are revoked (RFC
/// 6749 §4.1.2) when the one presenting it is the client the code was bound
/// to, or any authenticated client for a code bound to none (whose first
/// spender may have intercepted it). Anyone else learns only that the code
/// is used: letting them revoke would let one client cut off another's
/// users.
async fn replayed(
    app: &App,
    code_hash: &Digest,
    code: &CodeRecord,
    client: &ClientRecord,
) -> Outcome {
    let entitled = code
        .client_id
        .as_ref()
        .is_none_or(|bound| *bound == client.client_id);
    if entitled {
        match app.store.revoke_code_keys(code_hash).await {
            Ok(revoked) => telemetry::keys_revoked(
                revoked,
                &format!("client={}", client.client_id),
                "code replayed",
            ),
            Err(e) => return e.into(),
        }
    }
    refuse(Failure::BadCode, "This code has already been used.")
}

fn success(key: &str, record: &KeyRecord) -> Reply {
    Reply::success(
        "Successfully authenticated.",
        json!({
            "userID": record.user_id,
            "token": key,
            "identifier": record.identifier,
            "permissions": views::permissions(&record.permissions),
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
    fn a_verifier_for_a_code_without_challenge_is_refused() {
        let code = CodeRecord {
            user_id: 1,
            created_on: 0,
            expires_at: 10,
            client_id: None,
            challenge: None,
            redeemed: None,
            authorization: None,
        };
        let client = ClientRecord {
            client_id: "CI1".into(),
            secret_hash: String::new(),
            name: "n".into(),
            author: 1,
            requested_permissions: vec![],
            redirect_uri: None,
            webhook_uri: None,
            api_key_template: None,
            api_key_filename: None,
            created_on: 0,
            public: false,
        };
        assert!(check_code(&code, &client, None, 5).is_ok());
        assert_eq!(
            check_code(&code, &client, Some(&"a".repeat(43)), 5)
                .unwrap_err()
                .failure,
            Failure::BadVerifier
        );
        assert_eq!(
            check_code(&code, &client, None, 10).unwrap_err().failure,
            Failure::BadCode
        );
    }
}
