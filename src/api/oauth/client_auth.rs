//! Client authentication and the error vocabulary shared by the token,
//! revocation and introspection endpoints (RFC 6749 §2.3.1 and §5.2).

use crate::api::clients::NO_SUCH_CLIENT;
use crate::app::App;
use crate::http::authorization::{basic_credentials, Authorization};
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest, digest_from_hex, digests_match, ClientRecord};

/// How errors are answered: Tachi's statuses for its JSON integrators,
/// RFC 6749's for form bodies and whenever HTTP Basic was used (docs/http-api.md, "Token endpoint errors").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Tachi,
    Rfc6749,
}

/// The rows of the token endpoint's status table (docs/http-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    InvalidRequest,
    /// No client authentication at all (RFC 6749 §5.2: `invalid_client`,
    /// 401); Tachi's JSON style answers its validator's 400.
    NoClientAuthentication,
    UnsupportedGrantType,
    UnknownClient,
    WrongSecret,
    RedirectMismatch,
    BadCode,
    BadVerifier,
    /// A client asked to revoke a key another client's grant produced
    /// (RFC 7009 §2.1: refused, and the client told).
    NotYours,
}

impl Failure {
    /// The RFC 6749 §5.2 `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Failure::InvalidRequest => "invalid_request",
            Failure::UnsupportedGrantType => "unsupported_grant_type",
            Failure::UnknownClient | Failure::WrongSecret | Failure::NoClientAuthentication => {
                "invalid_client"
            }
            Failure::NotYours => "unauthorized_client",
            Failure::RedirectMismatch | Failure::BadCode | Failure::BadVerifier => "invalid_grant",
        }
    }

    /// The status for this failure in this style.
    pub fn status(self, style: Style) -> u16 {
        match (self, style) {
            (Failure::UnknownClient, Style::Tachi) => 404,
            (Failure::WrongSecret, Style::Tachi) => 403,
            (
                Failure::UnknownClient | Failure::WrongSecret | Failure::NoClientAuthentication,
                Style::Rfc6749,
            ) => 401,
            (Failure::BadCode, Style::Tachi) => 404,
            _ => 400,
        }
    }
}

/// A failed exchange: which row of the table, and the words for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub failure: Failure,
    pub description: String,
}

pub fn fail<T>(failure: Failure, description: impl Into<String>) -> Result<T, OAuthError> {
    Err(OAuthError {
        failure,
        description: description.into(),
    })
}

/// The client's credentials, from HTTP Basic or the body but never both.
pub fn client_credentials(
    auth: Option<Authorization<'_>>,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<(String, String), OAuthError> {
    match auth {
        Some(Authorization::Basic(encoded)) => {
            let Some((id, secret)) = basic_credentials(encoded) else {
                return fail(Failure::UnknownClient, "Malformed HTTP Basic client credentials.");
            };
            if body_secret.is_some() {
                return fail(
                    Failure::InvalidRequest,
                    "Authenticate the client with HTTP Basic or with client_secret in the body, not both.",
                );
            }
            if body_id.is_some_and(|body_id| body_id != id) {
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
        None => match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok((id.to_string(), secret.to_string())),
            (None, _) => fail(Failure::NoClientAuthentication, "client_id is required."),
            (_, None) => fail(Failure::NoClientAuthentication, "client_secret is required."),
        },
    }
}

pub enum Outcome {
    Failed(OAuthError),
    /// The store failed: not the caller's fault, answered as such.
    Store(Reply),
}

pub fn refuse(failure: Failure, description: impl Into<String>) -> Outcome {
    Outcome::Failed(OAuthError {
        failure,
        description: description.into(),
    })
}

impl From<OAuthError> for Outcome {
    fn from(e: OAuthError) -> Self {
        Outcome::Failed(e)
    }
}

impl From<crate::store::StoreError> for Outcome {
    fn from(e: crate::store::StoreError) -> Self {
        Outcome::Store(e.into())
    }
}

/// An error in both vocabularies: Tachi's envelope and RFC 6749 §5.2.
pub fn error_reply(e: &OAuthError, style: Style) -> Reply {
    let status = e.failure.status(style);
    let mut reply = Reply::failure(status, e.description.clone())
        .field("error", e.failure.code())
        .field("error_description", e.description.clone());
    if matches!(e.failure, Failure::UnknownClient | Failure::WrongSecret) {
        reply = reply.as_failed_auth();
    }
    // Every 401 carries a challenge (RFC 6749 §5.2), however the client
    // tried to authenticate.
    if status == 401 {
        reply.header("WWW-Authenticate", "Basic realm=\"tachi\"")
    } else {
        reply
    }
}

/// Whether HTTP Basic was used, which makes every answer RFC 6749-style.
pub fn uses_basic(req: &ApiRequest) -> bool {
    matches!(req.authorization(), Some(Authorization::Basic(_)))
}

/// For endpoints that only clients may call (revoke, introspect): no client
/// credentials at all is a failed client authentication (401), not a
/// malformed request.
pub fn require_credentials(req: &ApiRequest, body_id: Option<&str>) -> Result<(), Outcome> {
    if req.authorization().is_none() && body_id.is_none() {
        return Err(refuse(
            Failure::NoClientAuthentication,
            "Client authentication is required.",
        ));
    }
    Ok(())
}

/// The refusal of a client ID that names no client (also when the client
/// is deleted during an exchange).
pub fn unknown_client() -> Outcome {
    refuse(Failure::UnknownClient, NO_SUCH_CLIENT)
}

/// Authenticates the calling client: credentials from Basic or the body,
/// then the secret compared (as SHA-256 digests) in constant time.
pub async fn authenticate(
    app: &App,
    req: &ApiRequest,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> Result<ClientRecord, Outcome> {
    // A public client names itself by its ID alone (RFC 6749 §2.3, RFC
    // 8252 §8.4): it has no secret to send.
    let (client_id, secret) = match (req.authorization(), body_id, body_secret) {
        (None, Some(id), None) => (id.to_string(), None),
        (auth, _, _) => {
            let (id, secret) = client_credentials(auth, body_id, body_secret)?;
            (id, Some(secret))
        }
    };
    let Some(client) = app.store.client(&client_id).await? else {
        return Err(unknown_client());
    };
    match (client.public, secret) {
        (true, None) => Ok(client),
        (false, None) => Err(refuse(
            Failure::NoClientAuthentication,
            "client_secret is required.",
        )),
        (true, Some(_)) => Err(refuse(
            Failure::WrongSecret,
            "This client is public: it has no secret; send its client_id alone.",
        )),
        (false, Some(secret)) => {
            let stored = digest_from_hex(&client.secret_hash);
            if stored.is_some_and(|h| digests_match(&h, &digest(&secret))) {
                Ok(client)
            } else {
                Err(refuse(Failure::WrongSecret, "Invalid secret."))
            }
        }
    }
}

/// The common start of the revoke and introspect endpoints: read `token`
/// (and an ignored `token_type_hint`, which must still be a string) from the
/// body, and authenticate the calling client, which is required.
pub async fn client_and_token(
    app: &App,
    req: &ApiRequest,
) -> Result<(ClientRecord, String), Outcome> {
    let (_, params) = crate::http::body::object(req.content_type(), &req.body)
        .map_err(|e| refuse(Failure::InvalidRequest, e.describe()))?;
    let get =
        |name| super::string_param(&params, name).map_err(|d| refuse(Failure::InvalidRequest, d));
    let (id, secret, token) = (get("client_id")?, get("client_secret")?, get("token")?);
    get("token_type_hint")?;
    require_credentials(req, id.as_deref())?;
    let client = authenticate(app, req, id.as_deref(), secret.as_deref()).await?;
    let token = token.ok_or_else(|| refuse(Failure::InvalidRequest, "token is required."))?;
    Ok((client, token))
}

/// The answer for a failed request in this style, or the store's own failure.
pub fn outcome_reply(outcome: Outcome, style: Style) -> Reply {
    match outcome {
        Outcome::Failed(e) => error_reply(&e, style),
        Outcome::Store(reply) => reply,
    }
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
            (NoClientAuthentication, 400, 401),
            (NotYours, 400, 400),
        ];
        for (f, tachi, rfc) in rows {
            assert_eq!(f.status(Style::Tachi), tachi, "{f:?}");
            assert_eq!(f.status(Style::Rfc6749), rfc, "{f:?}");
        }
    }

    #[test]
    fn basic_and_body_secret_together_are_refused() {
        use base64::Engine as _;
        let enc = base64::engine::general_purpose::STANDARD.encode("CI1:s");
        let auth = Some(Authorization::Basic(enc.as_bytes()));
        let failure = |id, secret| client_credentials(auth, id, secret).unwrap_err().failure;
        assert_eq!(failure(None, Some("s")), Failure::InvalidRequest);
        assert_eq!(failure(Some("CI2"), None), Failure::InvalidRequest);
        assert_eq!(
            client_credentials(auth, Some("CI1"), None).unwrap(),
            ("CI1".to_string(), "s".to_string())
        );
    }

    #[test]
    fn body_credentials_need_both_parts() {
        assert!(client_credentials(None, Some("a"), Some("b")).is_ok());
        // Half the credentials authenticate nobody: invalid_client (RFC 6749 §5.2).
        assert_eq!(
            client_credentials(None, Some("a"), None)
                .unwrap_err()
                .failure,
            Failure::NoClientAuthentication
        );
    }
}
