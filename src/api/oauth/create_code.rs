//! `POST /api/v1/oauth/create-code`.

use serde_json::json;

use crate::api::clients::NO_SUCH_CLIENT;
use crate::app::App;
use crate::http::body;
use crate::http::reply::Reply;
use crate::http::request::ApiRequest;
use crate::store::{digest, now_ms, random_hex, CodeRecord};
use crate::telemetry;

use super::{pkce, string_param};

/// Creates an intermediate code for the session's user. Optional parameters,
/// from the JSON body or the query string: `clientID` binds the code to one
/// client; `code_challenge` and `code_challenge_method` add PKCE.
///
/// @name POST /api/v1/oauth/create-code
pub async fn create_code(app: &App, req: &ApiRequest) -> Reply {
    let user_id = match req.caller.session("You are not authenticated.") {
        Ok(u) => u,
        Err(reply) => return reply,
    };

    let mut params = match body::object(req.content_type(), &req.body) {
        Ok((_, p)) => p,
        Err(e) => return e.reply(),
    };
    for (k, v) in body::query_object(req.query.as_deref()) {
        params.entry(k).or_insert(v);
    }
    let (client_id, challenge, method) = match (
        string_param(&params, "clientID"),
        string_param(&params, "code_challenge"),
        string_param(&params, "code_challenge_method"),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Reply::failure(400, e),
    };
    if client_id.is_none() && app.config.oauth.require_client_binding {
        return Reply::failure(
            400,
            "This server only creates codes bound to a client: send the clientID the code is for.",
        );
    }
    let challenge = match pkce::challenge(challenge.as_deref(), method.as_deref()) {
        Ok(c) => c,
        Err(e) => return Reply::failure(400, e),
    };
    if let Some(id) = &client_id {
        match app.store.client(id).await {
            Ok(Some(client)) if client.public => {
                let s256 = challenge
                    .as_ref()
                    .is_some_and(|c| c.method == crate::store::PkceMethod::S256);
                if !s256 {
                    return Reply::failure(
                        400,
                        "A code for a public client needs a code_challenge with code_challenge_method S256.",
                    );
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return Reply::failure(404, NO_SUCH_CLIENT),
            Err(e) => return e.into(),
        }
    }

    let code = random_hex(20);
    let created_on = now_ms();
    let record = CodeRecord {
        user_id,
        created_on,
        expires_at: created_on + app.config.oauth.code_ttl.as_millis() as u64,
        client_id,
        challenge,
        redeemed: None,
        authorization: None,
    };
    let keep = app.config.oauth.codes_per_user;
    match app.store.insert_code(&digest(&code), &record, keep).await {
        Ok(0) => {}
        Ok(evicted) => log::info!(
            target: "audit",
            "codes replaced user={user_id} count={evicted} (oauth.codes_per_user)"
        ),
        Err(e) => return e.into(),
    }
    telemetry::code_issued(user_id, record.client_id.as_deref());
    Reply::success(
        "Successfully created code.",
        json!({"code": code, "userID": user_id, "createdOn": created_on}),
    )
}
