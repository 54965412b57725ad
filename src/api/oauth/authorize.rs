//! `GET` and `POST /api/v1/oauth/authorize`: the standard authorization
//! endpoint (RFC 6749 §4.1.1, PKCE by RFC 7636, `iss` by RFC 9207), so an
//! OAuth2 client library works from its first step.
//!
//! `GET` checks the request and shows the signed-in Tachi user a consent
//! page (or a page asking them to log in to Tachi first); the page's form
//! `POST`s the user's answer back, with a token that ties it to this
//! session and these parameters. Approval makes a code bound to the client,
//! the redirect URI, the granted permissions and the PKCE challenge, and
//! sends the browser to the client with it. Tachi's own flow (its front-end
//! page and `create-code`) is unchanged beside it.
//!
//! Errors that may not go back to the client, because the client or its
//! redirect URI is not known good (§4.1.2.1), are a page for the user;
//! every other error is a redirect to the client with `error`.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use super::consent_page;
use super::metadata::issuer;
use super::{pkce, string_param};
use crate::app::App;
use crate::http::body;
use crate::http::reply::Reply;
use crate::http::request::{ApiRequest, Caller};
use crate::store::{
    digest, digest_hex, now_ms, random_hex, Authorization, Challenge, ClientRecord, CodeRecord,
    PkceMethod,
};
use crate::telemetry;

/// How long a consent page's answer is accepted.
const CONSENT_TTL_MS: u64 = 10 * 60 * 1000;

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    pub client: ClientRecord,
    /// Where the answer goes: the URI sent, or the client's only one.
    pub redirect_uri: String,
    /// Whether the request sent `redirect_uri` (the token request must then too).
    pub sent_redirect: bool,
    pub state: Option<String>,
    /// The permissions asked for: a subset of the client's, in the request's order.
    pub scope: Vec<String>,
    pub challenge: Option<Challenge>,
}

/// Either a page for the user (the client cannot be trusted with the
/// answer) or an error the client is sent.
enum Refusal {
    Page(Reply),
    ToClient(&'static str, String),
}

/// Checks an authorization request's parameters, in RFC 6749 §4.1.2.1's
/// order: the client and its redirect URI first.
async fn check(
    app: &App,
    params: &Map<String, Value>,
) -> Result<AuthzRequest, (Refusal, Option<(String, Option<String>)>)> {
    let get = |name: &str| string_param(params, name).unwrap_or(None);
    let page = |status, message: &str| (Refusal::Page(consent_page::error(status, message)), None);
    let Some(client_id) = get("client_id") else {
        return Err(page(
            400,
            "This request names no client (client_id is missing).",
        ));
    };
    let client = match app.store.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(page(400, "This client does not exist.")),
        Err(e) => return Err((Refusal::Page(e.into()), None)),
    };
    let sent = get("redirect_uri");
    let redirect_uri = match (&sent, &client.redirect_uri) {
        (Some(sent), Some(registered)) if sent == registered => sent.clone(),
        (None, Some(registered)) => registered.clone(),
        (_, None) => {
            return Err(page(
                400,
                "This client has no redirect URI: it cannot use this page.",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(page(
                400,
                "The redirect_uri does not match the one the client registered.",
            ))
        }
    };
    let state = get("state");
    let back = Some((redirect_uri.clone(), state.clone()));
    let to_client =
        |error, description: String| (Refusal::ToClient(error, description), back.clone());
    match get("response_type").as_deref() {
        Some("code") => {}
        None => {
            return Err(to_client(
                "invalid_request",
                "response_type is required.".into(),
            ))
        }
        Some(_) => {
            return Err(to_client(
                "unsupported_response_type",
                "Only response_type=code is supported.".into(),
            ))
        }
    }
    let scope = match get("scope") {
        None => client.requested_permissions.clone(),
        Some(asked) => {
            let mut scope = Vec::new();
            for p in asked.split(' ').filter(|p| !p.is_empty()) {
                if !client.requested_permissions.iter().any(|r| r == p) {
                    let shown: String = p.chars().take(60).collect();
                    return Err(to_client(
                        "invalid_scope",
                        format!("The client did not register the permission '{shown}'."),
                    ));
                }
                if !scope.iter().any(|s| s == p) {
                    scope.push(p.to_string());
                }
            }
            if scope.is_empty() {
                return Err(to_client(
                    "invalid_scope",
                    "The scope names no permission.".into(),
                ));
            }
            scope
        }
    };
    let challenge = pkce::challenge(
        get("code_challenge").as_deref(),
        get("code_challenge_method").as_deref(),
    )
    .map_err(|e| to_client("invalid_request", e))?;
    if client.public
        && !challenge
            .as_ref()
            .is_some_and(|c| c.method == PkceMethod::S256)
    {
        return Err(to_client(
            "invalid_request",
            "A public client must use PKCE with code_challenge_method=S256.".into(),
        ));
    }
    Ok(AuthzRequest {
        sent_redirect: sent.is_some(),
        client,
        redirect_uri,
        state,
        scope,
        challenge,
    })
}

/// `redirect_uri` with the answer's parameters added to its query, `state`
/// and `iss` (RFC 9207) always among them.
fn answer_uri(
    redirect_uri: &str,
    state: Option<&str>,
    iss: &str,
    pairs: &[(&str, &str)],
) -> String {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return redirect_uri.to_string();
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", iss);
    }
    url.to_string()
}

/// The answer for a refused request: the page, or the client told.
fn refusal_reply(
    app: &App,
    req: &ApiRequest,
    refusal: Refusal,
    back: Option<(String, Option<String>)>,
) -> Reply {
    match (refusal, back) {
        (Refusal::Page(reply), _) => reply,
        (Refusal::ToClient(error, description), Some((uri, state))) => {
            let iss = issuer(app, req);
            let to = answer_uri(
                &uri,
                state.as_deref(),
                &iss,
                &[("error", error), ("error_description", &description)],
            );
            consent_page::secured(Reply::redirect(303, to))
        }
        (Refusal::ToClient(_, description), None) => consent_page::error(400, &description),
    }
}

/// The secret that signs consent forms, per gate process.
fn signed(app: &App, session: &str, user: u64, request: &AuthzRequest, issued: u64) -> String {
    // HMAC over every parameter the answer will act on, so a form cannot be
    // replayed for another session, client, redirect, scope or challenge.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&app.consent_key) else {
        return String::new();
    };
    let challenge = request
        .challenge
        .as_ref()
        .map(|c| format!("{:?}:{}", c.method, c.value))
        .unwrap_or_default();
    for part in [
        digest_hex(session).as_str(),
        &user.to_string(),
        &request.client.client_id,
        &request.redirect_uri,
        &request.sent_redirect.to_string(),
        &request.scope.join(" "),
        request.state.as_deref().unwrap_or(""),
        &challenge,
        &issued.to_string(),
    ] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    format!("{issued}.{}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `token` is one [`signed`] made for this session and request,
/// less than [`CONSENT_TTL_MS`] ago; compared in constant time.
fn token_holds(app: &App, session: &str, user: u64, request: &AuthzRequest, token: &str) -> bool {
    let Some((issued, _)) = token.split_once('.') else {
        return false;
    };
    let Ok(issued) = issued.parse::<u64>() else {
        return false;
    };
    let now = now_ms();
    if issued > now || now - issued > CONSENT_TTL_MS {
        return false;
    }
    let expected = signed(app, session, user, request, issued);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), token.as_bytes()).into()
}

/// The request's parameters: the query for `GET`, the form for `POST`. A
/// parameter given twice is refused (RFC 6749 §3.1), on a page: which one
/// counts, the client or its redirect URI included, would be a guess.
fn parameters(req: &ApiRequest) -> Result<Map<String, Value>, Reply> {
    let encoded = match req.method {
        http::Method::POST => &req.body[..],
        _ => req.query.as_deref().unwrap_or("").as_bytes(),
    };
    body::form_object(encoded).map_err(|e| consent_page::error(400, &e.describe()))
}

/// Shows the consent page (or asks the user to log in) for a valid request.
///
/// @name GET /api/v1/oauth/authorize
/// @name POST /api/v1/oauth/authorize
pub async fn authorize(app: &App, req: &ApiRequest) -> Reply {
    let params = match parameters(req) {
        Ok(p) => p,
        Err(page) => return page,
    };
    let request = match check(app, &params).await {
        Ok(r) => r,
        Err((refusal, back)) => return refusal_reply(app, req, refusal, back),
    };
    let Caller::Session(user) = req.caller else {
        return consent_page::log_in(&app.config.oauth.login_url);
    };
    let session = crate::auth::session::cookie_header(&req.headers).unwrap_or_default();
    if req.method != http::Method::POST {
        let token = signed(app, &session, user, &request, now_ms());
        return consent_page::consent(&request, user, &token);
    }
    let token = string_param(&params, "consent_token")
        .ok()
        .flatten()
        .unwrap_or_default();
    if !token_holds(app, &session, user, &request, &token) {
        return consent_page::error(
            400,
            "This consent form is out of date or was not made for you. Go back and try again.",
        );
    }
    let iss = issuer(app, req);
    match string_param(&params, "decision").ok().flatten().as_deref() {
        Some("approve") => approve(app, &request, user, &iss).await,
        Some("deny") => consent_page::secured(Reply::redirect(
            303,
            answer_uri(
                &request.redirect_uri,
                request.state.as_deref(),
                &iss,
                &[
                    ("error", "access_denied"),
                    ("error_description", "The user denied the request."),
                ],
            ),
        )),
        _ => consent_page::error(400, "Choose Approve or Deny."),
    }
}

/// Makes the code the user approved and sends the browser to the client.
async fn approve(app: &App, request: &AuthzRequest, user: u64, iss: &str) -> Reply {
    let code = random_hex(20);
    let created_on = now_ms();
    let record = CodeRecord {
        user_id: user,
        created_on,
        expires_at: created_on + app.config.oauth.code_ttl.as_millis() as u64,
        client_id: Some(request.client.client_id.clone()),
        challenge: request.challenge.clone(),
        redeemed: None,
        authorization: Some(Authorization {
            redirect_uri: request.sent_redirect.then(|| request.redirect_uri.clone()),
            scope: request.scope.clone(),
        }),
    };
    let keep = app.config.oauth.codes_per_user;
    if let Err(e) = app.store.insert_code(&digest(&code), &record, keep).await {
        return e.into();
    }
    telemetry::code_issued(user, Some(&request.client.client_id));
    consent_page::secured(Reply::redirect(
        303,
        answer_uri(
            &request.redirect_uri,
            request.state.as_deref(),
            iss,
            &[("code", &code)],
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_the_clients_query_and_add_state_and_iss() {
        let uri = answer_uri(
            "https://c.example/cb?x=1",
            Some("s t"),
            "https://g.example",
            &[("code", "abc")],
        );
        assert_eq!(
            uri,
            "https://c.example/cb?x=1&code=abc&state=s+t&iss=https%3A%2F%2Fg.example"
        );
        let native = answer_uri(
            "tachi-app:done",
            None,
            "https://g",
            &[("error", "access_denied")],
        );
        assert_eq!(
            native,
            "tachi-app:done?error=access_denied&iss=https%3A%2F%2Fg"
        );
    }
}
