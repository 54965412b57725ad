//! Key lifecycle through real sockets: Tachi's api-tokens routes, RFC 7009
//! revocation, RFC 7662 introspection and RFC 8414 metadata.

use crate::support::*;
use serde_json::{json, Value};

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_list_create_and_delete_for_the_own_session() {
    let gate = TestGate::start("").await;
    let me = gate.session(6);
    let (client_id, _) = gate
        .create_client(&me, "https://example.com/cb", &["submit_score"])
        .await;
    let http = &gate.http;

    // Create with chosen permissions: the key is shown once.
    let (st, v) = send(http.post(gate.url("/api/v1/users/me/api-tokens/create")).header("cookie", &me)
        .json(&json!({"identifier": "my script", "permissions": ["submit_score", "delete_score"]}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["description"], "Successfully created new API Token.");
    let custom_key = v["body"]["token"].as_str().unwrap().to_string();
    let custom_id = v["body"]["tokenID"].as_str().unwrap().to_string();
    assert_eq!(
        v["body"]["permissions"],
        json!({"delete_score": true, "submit_score": true})
    );
    assert_eq!(v["body"]["fromAPIClient"], Value::Null);
    assert_eq!(gate.get_with_key("/x", &custom_key).await.status(), 200);

    // Create from a client, by numeric user ID: named after the client, and
    // any identifier ignored (Tachi: server/src/server/router/api/v1/users/
    // _userID/api-tokens/router.ts, POST /create).
    let (st, v) = send(
        http.post(gate.url("/api/v1/users/6/api-tokens/create"))
            .header("cookie", &me)
            .json(&json!({"clientID": client_id, "identifier": "ignored"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let client_key = v["body"]["token"].as_str().unwrap().to_string();
    assert_eq!(v["body"]["identifier"], "Epic Games");
    assert_eq!(v["body"]["fromAPIClient"], client_id);
    // Asked again (the client-file page on a second machine): 200 "Returned
    // existing key", with a key that works; the first keeps working.
    let (st, v) = send(
        http.post(gate.url("/api/v1/users/6/api-tokens/create"))
            .header("cookie", &me)
            .json(&json!({"clientID": client_id})),
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (200, Some("Returned existing key"))
    );
    let second_key = v["body"]["token"].as_str().unwrap().to_string();
    let second_id = v["body"]["tokenID"].as_str().unwrap().to_string();
    assert_ne!(second_key, client_key);
    assert_eq!(gate.get_with_key("/x", &second_key).await.status(), 200);
    assert_eq!(gate.get_with_key("/x", &client_key).await.status(), 200);
    // identifier is optional ("Custom Token"), and may be empty.
    for (body, identifier) in [
        (json!({"permissions": ["submit_score"]}), "Custom Token"),
        (json!({"identifier": "", "permissions": []}), ""),
    ] {
        let (st, v) = send(
            http.post(gate.url("/api/v1/users/me/api-tokens/create"))
                .header("cookie", &me)
                .json(&body),
        )
        .await;
        assert_eq!(
            (st, v["body"]["identifier"].as_str()),
            (200, Some(identifier)),
            "{body}"
        );
        let token_id = v["body"]["tokenID"].as_str().unwrap().to_string();
        let (st, _) = send(
            http.delete(gate.url(&format!("/api/v1/users/me/api-tokens/{token_id}")))
                .header("cookie", &me),
        )
        .await;
        assert_eq!(st, 200);
    }

    // Bad create requests, with Tachi's words where its tests assert them.
    for (body, description) in [
        (
            json!({"clientID": client_id, "permissions": []}),
            Some("Cannot use ClientID creation and permissions creation at the same time!"),
        ),
        (
            json!({}),
            Some("Invalid request, must specify either clientID or permissions."),
        ),
        (json!({"identifier": "x", "permissions": ["nope"]}), None),
        (json!({"identifier": 5, "permissions": []}), None),
    ] {
        let (st, v) = send(
            http.post(gate.url("/api/v1/users/me/api-tokens/create"))
                .header("cookie", &me)
                .json(&body),
        )
        .await;
        assert_eq!(st, 400, "{body} -> {v}");
        if let Some(d) = description {
            assert_eq!(v["description"], d);
        }
    }
    let (st, v) = send(
        http.post(gate.url("/api/v1/users/me/api-tokens/create"))
            .header("cookie", &me)
            .json(&json!({"permissions": ["invalid_permission"]})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        v["description"]
            .as_str()
            .unwrap()
            .contains("invalid_permission"),
        "{v}"
    );
    let (st, _) = send(
        http.post(gate.url("/api/v1/users/me/api-tokens/create"))
            .header("cookie", &me)
            .json(&json!({"clientID": "CInope"})),
    )
    .await;
    assert_eq!(st, 404);

    // List: never the key itself.
    let (st, v) = send(
        http.get(gate.url("/api/v1/users/me/api-tokens"))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["description"], "Returned 3 keys.");
    let listed = v["body"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    for k in listed {
        // Tachi's page reveals `token` and deletes with it: here it names the
        // key by its token ID, and is never the key.
        let token = k["token"].as_str().unwrap();
        assert_eq!(token, format!("tokenID:{}", k["tokenID"].as_str().unwrap()));
        assert!(k["tokenID"].is_string() && k["createdOn"].is_u64() && k["userID"] == 6);
    }
    assert!(!v.to_string().contains(&custom_key) && !v.to_string().contains(&client_key));
    // The stock delete button sends that `token` back.
    let listed_second = listed
        .iter()
        .find(|k| k["tokenID"] == second_id.as_str())
        .map(|k| k["token"].as_str().unwrap().to_string())
        .unwrap();
    let (st, _) = send(
        http.delete(gate.url(&format!("/api/v1/users/me/api-tokens/{listed_second}")))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(gate.get_with_key("/x", &second_key).await.status(), 401);

    // Delete by token ID and by key value.
    let (st, v) = send(
        http.delete(gate.url(&format!("/api/v1/users/me/api-tokens/{custom_id}")))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (200, Some("Removed Token."))
    );
    assert_eq!(gate.get_with_key("/x", &custom_key).await.status(), 401);
    let (st, _) = send(
        http.delete(gate.url(&format!("/api/v1/users/6/api-tokens/{client_key}")))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(gate.get_with_key("/x", &client_key).await.status(), 401);
    let (st, v) = send(
        http.delete(gate.url(&format!("/api/v1/users/6/api-tokens/{client_key}")))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (404, Some("This key does not exist."))
    );
    // Wrong methods.
    let (st, _) = send(
        http.put(gate.url("/api/v1/users/me/api-tokens"))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(st, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_refuse_keys_other_users_and_guests() {
    let gate = TestGate::start("").await;
    let (key, _, _) = gate.issue_key(6, &["submit_score"]).await;
    let me = gate.session(6);
    let other = gate.session(7);
    let http = &gate.http;
    let url = gate.url("/api/v1/users/6/api-tokens");

    let (st, v) = send(http.get(&url).bearer_auth(&key)).await;
    assert_eq!(st, 403);
    assert_eq!(
        v["description"],
        "This request cannot be performed by an API key, and requires authentication."
    );
    let (st, _) = send(http.get(&url).header("cookie", &other)).await;
    assert_eq!(st, 403, "another user's keys");
    let (st, v) = send(http.get(&url)).await;
    assert_eq!(
        (st, v["description"].as_str()),
        (
            401,
            Some("This endpoint requires session-level authentication.")
        )
    );
    // A user Tachi does not know (server/src/server/router/api/v1/users/
    // _userID/middleware.ts, GetUserFromParam: 404 "The user X does not exist.").
    let (st, v) = send(
        http.get(gate.url("/api/v1/users/someone/api-tokens"))
            .header("cookie", &me),
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (404, Some("The user someone does not exist."))
    );
    // Another user cannot delete my key, even knowing it.
    let (st, _) = send(
        http.delete(gate.url(&format!("/api/v1/users/7/api-tokens/{key}")))
            .header("cookie", &other),
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
}

/// Revocation as RFC 7009 client libraries send it: a form POST with HTTP Basic.
/// (The `oauth2` crate refuses to revoke over plain http, so this test speaks
/// the wire format directly.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7009_revocation_only_touches_the_callers_keys() {
    let gate = TestGate::start("").await;
    let (key, id, secret) = gate.issue_key(1, &["submit_score"]).await;
    let (other_key, other_id, other_secret) = gate.issue_key(2, &["submit_score"]).await;
    let url = gate.url("/api/v1/oauth/revoke");

    // Another client's key: refused (RFC 7009 §2.1), and the key stays live.
    let r = gate
        .http
        .post(&url)
        .basic_auth(&other_id, Some(&other_secret))
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    // Unknown keys: 200.
    let r = gate
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "ffff"), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Bad client credentials: 401 with a Basic challenge; missing token: 400.
    let r = gate
        .http
        .post(&url)
        .basic_auth(&id, Some("CSwrong"))
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = gate
        .http
        .post(&url)
        .form(&[("token", key.as_str()), ("client_id", id.as_str())])
        .send()
        .await
        .unwrap();
    // A confidential client's ID alone authenticates nobody (RFC 6749 §5.2).
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // An empty token is a missing one (RFC 7009 §2.1, RFC 6749 §3.2).
    let r = gate
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = gate
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    // The owner revokes, with body credentials.
    let r = gate
        .http
        .post(&url)
        .form(&[
            ("token", key.as_str()),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 401);
    assert_eq!(gate.get_with_key("/x", &other_key).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7662_introspection() {
    let gate = TestGate::start("").await;
    let (key, id, secret) = gate.issue_key(12, &["submit_score", "manage_rivals"]).await;
    let url = gate.url("/api/v1/oauth/introspect");
    let ask = |token: &str, auth: Option<(&str, &str)>| {
        let mut req = gate.http.post(&url).form(&[("token", token.to_string())]);
        if let Some((i, s)) = auth {
            req = req.basic_auth(i, Some(s));
        }
        send(req)
    };

    let (st, v) = ask(&key, Some((&id, &secret))).await;
    assert_eq!(st, 200);
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "manage_rivals submit_score");
    assert_eq!(v["client_id"], id);
    assert_eq!(v["sub"], "12");
    assert_eq!(v["token_type"], "Bearer");
    let iat = v["iat"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(iat <= now && now - iat < 60);

    let (st, v) = ask(
        "0000000000000000000000000000000000000000",
        Some((&id, &secret)),
    )
    .await;
    assert_eq!((st, v), (200, json!({"active": false})));
    let (st, v) = ask(&key, None).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (401, Some("invalid_client")),
        "no client credentials at all"
    );
    let (st, v) = ask(&key, Some((&id, "CSwrong"))).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));

    // After revocation the key is inactive.
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, v) = ask(&key, Some((&id, &secret))).await;
    assert_eq!((st, v), (200, json!({"active": false})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8414_metadata_from_host_or_public_url() {
    let gate = TestGate::start("").await;
    let (st, v) = send(
        gate.http
            .get(gate.url("/.well-known/oauth-authorization-server")),
    )
    .await;
    assert_eq!(st, 200);
    let issuer = format!("http://{}", gate.addr);
    assert_eq!(v["issuer"], issuer);
    assert_eq!(v["token_endpoint"], format!("{issuer}/api/v1/oauth/token"));
    assert_eq!(
        v["revocation_endpoint"],
        format!("{issuer}/api/v1/oauth/revoke")
    );
    assert_eq!(
        v["introspection_endpoint"],
        format!("{issuer}/api/v1/oauth/introspect")
    );
    assert_eq!(v["grant_types_supported"], json!(["authorization_code"]));
    assert_eq!(v["response_types_supported"], json!(["code"]));
    // Public clients authenticate by their ID alone ("none"); the standard
    // authorization endpoint answers in the query, with `iss` (RFC 9207).
    assert_eq!(
        v["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post", "none"])
    );
    assert_eq!(
        v["authorization_endpoint"],
        format!("{issuer}/api/v1/oauth/authorize")
    );
    assert_eq!(v["response_modes_supported"], json!(["query"]));
    assert_eq!(v["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        v["code_challenge_methods_supported"],
        json!(["S256", "plain"])
    );
    assert_eq!(v["scopes_supported"].as_array().unwrap().len(), 8);
    assert!(
        v.get("success").is_none(),
        "RFC 8414 metadata is a plain object"
    );

    let gate = TestGate::start(
        "[server]\nadmin_listen = \"\"\npublic_url = \"https://tachi.example.com/\"",
    )
    .await;
    let (_, v) = send(
        gate.http
            .get(gate.url("/.well-known/oauth-authorization-server")),
    )
    .await;
    assert_eq!(v["issuer"], "https://tachi.example.com");
    assert_eq!(
        v["token_endpoint"],
        "https://tachi.example.com/api/v1/oauth/token"
    );
    let (st, _) = send(
        gate.http
            .post(gate.url("/.well-known/oauth-authorization-server")),
    )
    .await;
    assert_eq!(st, 405);
    // An issuer with a path also has its path-suffixed well-known URL
    // (RFC 8414 §3.1); other suffixes are not found.
    let gate = TestGate::start("[server]\npublic_url = \"https://x.example/tachi\"").await;
    let suffixed = "/.well-known/oauth-authorization-server/tachi";
    let (st, v) = send(gate.http.get(gate.url(suffixed))).await;
    assert_eq!(
        (st, v["issuer"].as_str()),
        (200, Some("https://x.example/tachi"))
    );
    let (st, _) = send(
        gate.http
            .get(gate.url("/.well-known/oauth-authorization-server/other")),
    )
    .await;
    assert_eq!(st, 404);
}
