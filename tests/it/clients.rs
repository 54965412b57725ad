//! `/api/v1/clients…` through real sockets: Tachi's validation, the cap,
//! ownership, secrets shown only once, and delete removing every key.

use crate::support::*;
use serde_json::{json, Value};

const CB: &str = "https://example.com/cb";

async fn call(
    gate: &TestGate,
    method: reqwest::Method,
    path: &str,
    cookie: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = gate.http.request(method, gate.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_validates_like_tachi() {
    let gate = TestGate::start("").await;
    let me = gate.session(1);
    let post = reqwest::Method::POST;
    let good = json!({"name": "My App", "redirectUri": CB, "webhookUri": null,
                      "apiKeyTemplate": "key=%%TACHI_KEY%%", "apiKeyFilename": "key.txt",
                      "permissions": ["submit_score", "submit_score", "customise_profile"]});
    let (st, v) = call(
        &gate,
        post.clone(),
        "/api/v1/clients/create",
        Some(&me),
        Some(good.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["description"], "Created a new API client.");
    let b = &v["body"];
    assert!(b["clientID"].as_str().unwrap().starts_with("CI"));
    assert_eq!(b["clientID"].as_str().unwrap().len(), 42);
    assert!(b["clientSecret"].as_str().unwrap().starts_with("CS"));
    assert_eq!(b["clientSecret"].as_str().unwrap().len(), 42);
    assert_eq!(b["author"], 1);
    assert_eq!(
        b["requestedPermissions"],
        json!(["submit_score", "customise_profile"])
    );
    assert_eq!(b["redirectUri"], CB);
    assert_eq!(b["apiKeyTemplate"], "key=%%TACHI_KEY%%");

    let bad = |k: &str, val: Value| {
        let mut x = good.clone();
        x[k] = val;
        x
    };
    for body in [
        bad("name", json!("ab")),
        bad("name", json!("x".repeat(81))),
        bad("name", json!(5)),
        bad("redirectUri", json!("ftp://example.com")),
        bad("redirectUri", json!("not a url")),
        bad("webhookUri", json!("javascript:alert(1)")),
        bad("apiKeyTemplate", json!("no placeholder")),
        bad("permissions", json!([])),
        bad("permissions", json!(["not_a_permission"])),
        bad("permissions", json!("submit_score")),
        bad("clientSecret", json!("CSmine")),
    ] {
        let (st, v) = call(
            &gate,
            post.clone(),
            "/api/v1/clients/create",
            Some(&me),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, 400, "{body} -> {v}");
        assert_eq!(v["success"], false);
    }
    // A null redirectUri is allowed.
    let (st, _) = call(
        &gate,
        post.clone(),
        "/api/v1/clients/create",
        Some(&me),
        Some(bad("redirectUri", Value::Null)),
    )
    .await;
    assert_eq!(st, 200);
    // Guests and keys cannot create clients.
    let (st, _) = call(
        &gate,
        post.clone(),
        "/api/v1/clients/create",
        None,
        Some(good.clone()),
    )
    .await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cap_is_enforced_per_user() {
    let gate = TestGate::start("[oauth]\nclient_cap = 2").await;
    let me = gate.session(1);
    let body = json!({"name": "App", "redirectUri": CB, "permissions": ["submit_score"]});
    for _ in 0..2 {
        let (st, _) = call(
            &gate,
            reqwest::Method::POST,
            "/api/v1/clients/create",
            Some(&me),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, 200);
    }
    let (st, v) = call(
        &gate,
        reqwest::Method::POST,
        "/api/v1/clients/create",
        Some(&me),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["description"],
        "You have created too many API clients. The current cap is 2."
    );
    let other = gate.session(2);
    let (st, _) = call(
        &gate,
        reqwest::Method::POST,
        "/api/v1/clients/create",
        Some(&other),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "the cap is per user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_get_never_show_secrets() {
    let gate = TestGate::start("").await;
    let me = gate.session(1);
    let (id, _) = gate.create_client(&me, CB, &["submit_score"]).await;
    let other = gate.session(2);
    gate.create_client(&other, CB, &["submit_score"]).await;

    let (st, v) = call(
        &gate,
        reqwest::Method::GET,
        "/api/v1/clients",
        Some(&me),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["description"], "Returned 1 clients.");
    assert_eq!(v["body"].as_array().unwrap().len(), 1);
    assert_eq!(v["body"][0]["clientID"], id);
    assert!(v["body"][0].get("clientSecret").is_none());
    let (st, _) = call(&gate, reqwest::Method::GET, "/api/v1/clients", None, None).await;
    assert_eq!(st, 401);

    let (st, v) = call(
        &gate,
        reqwest::Method::GET,
        &format!("/api/v1/clients/{id}"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200, "anyone may look a client up");
    assert_eq!(v["body"]["name"], "Epic Games");
    assert!(v["body"].get("clientSecret").is_none());
    let (st, v) = call(
        &gate,
        reqwest::Method::GET,
        "/api/v1/clients/CInope",
        None,
        None,
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (404, Some("This client does not exist."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_changes_what_tachi_allows_for_the_owner_only() {
    let gate = TestGate::start("").await;
    let me = gate.session(1);
    let (id, _) = gate.create_client(&me, CB, &["submit_score"]).await;
    let path = format!("/api/v1/clients/{id}");
    let patch = reqwest::Method::PATCH;

    let (st, v) = call(
        &gate,
        patch.clone(),
        &path,
        Some(&me),
        Some(json!({"name": "Renamed", "webhookUri": "https://hooks.example/x"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["body"]["name"], "Renamed");
    assert_eq!(v["body"]["webhookUri"], "https://hooks.example/x");
    assert!(v["body"].get("clientSecret").is_none());
    let (_, v) = call(&gate, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(v["body"]["name"], "Renamed");

    let (st, v) = call(&gate, patch.clone(), &path, Some(&me), Some(json!({}))).await;
    assert_eq!(
        (st, v["description"].as_str()),
        (400, Some("No changes to make."))
    );
    let (st, _) = call(
        &gate,
        patch.clone(),
        &path,
        Some(&me),
        Some(json!({"permissions": ["delete_score"]})),
    )
    .await;
    assert_eq!(st, 400, "permissions cannot change");
    let (st, _) = call(
        &gate,
        patch.clone(),
        &path,
        Some(&me),
        Some(json!({"redirectUri": "nope"})),
    )
    .await;
    assert_eq!(st, 400);

    let other = gate.session(2);
    let (st, v) = call(
        &gate,
        patch.clone(),
        &path,
        Some(&other),
        Some(json!({"name": "Stolen"})),
    )
    .await;
    assert_eq!(
        (st, v["description"].as_str()),
        (403, Some("You are not authorized to perform this action."))
    );
    let (st, _) = call(
        &gate,
        patch.clone(),
        &path,
        None,
        Some(json!({"name": "Stolen"})),
    )
    .await;
    assert_eq!(st, 401);
    let (st, _) = call(
        &gate,
        patch,
        "/api/v1/clients/CInope",
        Some(&me),
        Some(json!({"name": "X Y Z"})),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(&gate, reqwest::Method::POST, &path, Some(&me), None).await;
    assert_eq!(st, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_secret_replaces_the_secret_and_keeps_keys() {
    let gate = TestGate::start("").await;
    let (key, id, old_secret) = gate.issue_key(1, &["submit_score"]).await;
    let me = gate.session(1);
    let path = format!("/api/v1/clients/{id}/reset-secret");

    let (st, _) = call(
        &gate,
        reqwest::Method::POST,
        &path,
        Some(&gate.session(2)),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, v) = call(&gate, reqwest::Method::POST, &path, Some(&me), None).await;
    assert_eq!(st, 200, "{v}");
    let new_secret = v["body"]["clientSecret"].as_str().unwrap().to_string();
    assert!(new_secret.starts_with("CS") && new_secret != old_secret);

    let r = gate.get_with_key("/x", &key).await;
    assert_eq!(r.status(), 200, "existing keys stay valid");
    let code = gate.create_code(&me, json!({})).await;
    let req = |secret: &str| json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code});
    assert_eq!(gate.token_json(req(&old_secret)).await.0, 403);
    assert_eq!(gate.token_json(req(&new_secret)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_client_and_every_key_it_issued() {
    let gate = TestGate::start("").await;
    let me = gate.session(1);
    let (id, secret) = gate.create_client(&me, CB, &["submit_score"]).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let code = gate.create_code(&me, json!({})).await;
        let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
        assert_eq!(st, 200);
        keys.push(v["body"]["token"].as_str().unwrap().to_string());
    }
    let (other_key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let path = format!("/api/v1/clients/{id}");

    let (st, _) = call(
        &gate,
        reqwest::Method::DELETE,
        &path,
        Some(&gate.session(2)),
        None,
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(&gate, reqwest::Method::DELETE, &path, None, None).await;
    assert_eq!(st, 401);
    for k in &keys {
        assert_eq!(gate.get_with_key("/x", k).await.status(), 200);
    }
    let (st, v) = call(&gate, reqwest::Method::DELETE, &path, Some(&me), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["description"], format!("Deleted Epic Games ({id})."));
    for k in &keys {
        assert_eq!(gate.get_with_key("/x", k).await.status(), 401);
    }
    assert_eq!(
        gate.get_with_key("/x", &other_key).await.status(),
        200,
        "other clients' keys live on"
    );
    let (st, _) = call(&gate, reqwest::Method::GET, &path, None, None).await;
    assert_eq!(st, 404);
    let (st, _) = call(&gate, reqwest::Method::DELETE, &path, Some(&me), None).await;
    assert_eq!(st, 404);
}

/// HEAD on the gate's own GET routes answers as GET would, headers and all,
/// without the content (RFC 9110 §9.3.2), and Allow lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_answered_as_get_without_content() {
    let gate = TestGate::start("").await;
    let me = gate.session(1);
    let (id, _) = gate.create_client(&me, CB, &["submit_score"]).await;
    let paths = [
        ("/.well-known/oauth-authorization-server", None),
        ("/api/v1/clients", Some(me.as_str())),
        ("/api/v1/clients", None),
        (&*format!("/api/v1/clients/{id}"), None),
        ("/api/v1/users/1/api-tokens", Some(me.as_str())),
        ("/api/v1/users/1/api-tokens", None),
    ];
    for (path, cookie) in paths {
        let send = |method: reqwest::Method| {
            let mut req = gate.http.request(method, gate.url(path));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            req.send()
        };
        let get = send(reqwest::Method::GET).await.unwrap();
        let head = send(reqwest::Method::HEAD).await.unwrap();
        let shown = format!("HEAD {path} (session: {})", cookie.is_some());
        assert_eq!(head.status(), get.status(), "{shown}");
        for name in ["content-type", "content-length", "cache-control"] {
            assert_eq!(
                head.headers().get(name),
                get.headers().get(name),
                "{shown}: {name}"
            );
        }
        let get_len: usize = get.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(get.bytes().await.unwrap().len(), get_len, "{shown}");
        assert!(get_len > 0, "{shown}");
        assert!(head.bytes().await.unwrap().is_empty(), "{shown}");
    }
    let r = gate
        .http
        .post(gate.url(&format!("/api/v1/clients/{id}")))
        .header("cookie", &me)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH, DELETE");
    let r = gate
        .http
        .head(gate.url("/api/v1/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}
