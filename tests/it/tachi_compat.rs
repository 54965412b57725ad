//! What Tachi's own web UI, its score hooks and its API users expect of the
//! routes the gate answers, with Tachi's source as the reference. File and
//! line references are to zkrising/Tachi at commit 536c3c67.

use crate::support::*;
use reqwest::Method;
use serde_json::{json, Value};

const CB: &str = "https://example.com/cb";

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Tachi's CORS headers (server/src/server/server.ts:92-110), on every answer.
fn assert_tachi_cors(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*", "{what}");
    assert_eq!(
        h["access-control-allow-headers"], "Content-Type, X-User-Intent, Authorization",
        "{what}"
    );
    assert_eq!(h["access-control-allow-credentials"], "false", "{what}");
    assert_eq!(
        h["access-control-allow-methods"], "GET,POST,PATCH,PUT,DELETE,OPTIONS",
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_the_gate_gives_carries_tachis_cors_headers() {
    let gate = TestGate::start(
        "[[auth.policy]]\npath_prefix = \"/private\"\nrequire = [\"delete_score\"]\n[limits]\nfailed_auths = 1",
    )
    .await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let origin = "https://elsewhere.example";
    let get = |path: &str, key: Option<&str>| {
        let mut r = gate.http.get(gate.url(path)).header("origin", origin);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let own = get("/api/v1/clients/CInope", None).await.unwrap();
    assert_eq!(own.status(), 404);
    assert_tachi_cors(&own, "own route");
    let metadata = get("/.well-known/oauth-authorization-server", None)
        .await
        .unwrap();
    assert_tachi_cors(&metadata, "metadata");
    for (what, key, status) in [
        ("unknown key", Some("nope"), 401),
        ("over the failure limit", Some("nope"), 429),
        ("missing permission", Some(key.as_str()), 403),
        ("guest under a policy", None, 401),
    ] {
        let r = get("/private/x", key).await.unwrap();
        assert_eq!(r.status(), status, "{what}");
        assert_tachi_cors(&r, what);
    }
    // Every OPTIONS is a preflight Tachi answers 200 with no content
    // (server.ts:101), on the gate's routes and on forwarded ones alike.
    for path in [
        "/api/v1/oauth/token",
        "/api/v1/clients",
        "/private/x",
        "/anything",
    ] {
        let r = gate
            .http
            .request(Method::OPTIONS, gate.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_tachi_cors(&r, path);
        assert!(r.bytes().await.unwrap().is_empty(), "{path}");
    }
    // A dead upstream's 502 too.
    let mut dead = TestGate::start("").await;
    dead.upstream.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = dead.get("/anything").await;
    assert_eq!(r.status(), 502);
    assert_tachi_cors(&r, "502");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_can_be_narrowed_or_turned_off() {
    let gate = TestGate::start("[server]\ncors_origins = [\"https://tachi.example\"]").await;
    let from = |origin: &'static str| {
        gate.http
            .get(gate.url("/api/v1/clients/CInope"))
            .header("origin", origin)
            .send()
    };
    let r = from("https://tachi.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://tachi.example"
    );
    assert_eq!(r.headers()["vary"], "Origin");
    let r = from("https://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    // Forwarded answers are held to the same list (the mock sets none itself).
    let r = gate
        .http
        .get(gate.url("/x"))
        .header("origin", "https://tachi.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://tachi.example"
    );

    let off = TestGate::start("[server]\ncors_origins = []").await;
    let r = off
        .http
        .get(off.url("/api/v1/clients/CInope"))
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    let r = off
        .http
        .request(Method::OPTIONS, off.url("/api/v1/clients"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        405,
        "without CORS, OPTIONS is an unknown method here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_users_session_gets_tachis_403_not_a_502() {
    // RejectIfBanned: server/src/server/middleware/auth.ts:21-44.
    let gate = TestGate::start("[[auth.policy]]\npath_prefix = \"/private\"").await;
    let cookie = gate.session(9);
    gate.upstream.ban(9);
    let r = gate
        .post_as(&gate.url("/api/v1/oauth/create-code"), &cookie, json!({}))
        .await;
    let (status, v) = json_of(r).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (403, Some("You are banned from Tachi"))
    );
    let r = gate.send_as(Method::GET, "/private/x", &cookie).await;
    let (status, v) = json_of(r).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (403, Some("You are banned from Tachi"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_in_urls_may_be_names_in_any_case() {
    // GetUserFromParam: server/src/server/router/api/v1/users/_userID/
    // middleware.ts:11-53, with ResolveUser (server/src/utils/user.ts:122-131).
    let gate = TestGate::start("").await;
    let cookie = gate.session(6);
    gate.upstream.add_user("Alice", 6, false);
    for name in ["alice", "ALICE", "Alice", "6", "me"] {
        let r = gate
            .send_as(
                Method::GET,
                &format!("/api/v1/users/{name}/api-tokens"),
                &cookie,
            )
            .await;
        assert_eq!(r.status(), 200, "{name}");
    }
    let (status, v) = json_of(
        gate.send_as(Method::GET, "/api/v1/users/bob/api-tokens", &cookie)
            .await,
    )
    .await;
    assert_eq!(
        (status, v["description"].as_str()),
        (404, Some("The user bob does not exist."))
    );
    let (status, v) = json_of(gate.get("/api/v1/users/me/api-tokens").await).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (401, Some("Cannot use 'me' userID with no authentication."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_wins_over_authorization_and_an_empty_header_is_a_guest() {
    // CreateSetRequestPermissions: server/src/server/middleware/auth.ts:72-91.
    let gate = TestGate::start("[[auth.policy]]\npath_prefix = \"/private\"").await;
    let cookie = gate.session(3);
    // Own routes: the session is used, the header ignored.
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/create-code"))
        .header("cookie", &cookie)
        .header("authorization", "Bearer not-a-key")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = |path: &str, headers: &[(&'static str, &str)]| {
        let mut r = gate.http.get(gate.url(path));
        for (name, value) in headers {
            r = r.header(*name, *value);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    // Forwarded: the session passes the policy; the upstream gets the cookie.
    let both = [("cookie", cookie.as_str()), ("authorization", "Basic eDp5")];
    assert_eq!(status("/private/x", &both).await, 200);
    // An empty Authorization header is no credentials at all.
    assert_eq!(status("/x", &[("authorization", "")]).await, 200);
    assert_eq!(
        status("/api/v1/clients/CInope", &[("authorization", "")]).await,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_on_the_gates_public_routes() {
    // Tachi's SetRequestPermissions covers every /api/v1 route
    // (server/src/server/router/router.ts:17; auth.ts:109-119).
    let gate = TestGate::start("").await;
    let cookie = gate.session(1);
    let (id, _) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let r = gate
        .get_with_key(&format!("/api/v1/clients/{id}"), "nope")
        .await;
    let (status, v) = json_of(r).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (
            401,
            Some("The provided API token does not correspond with any key in the database.")
        )
    );
    assert_eq!(
        gate.get(&format!("/api/v1/clients/{id}")).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_hooks_get_refusals_in_the_shape_they_read() {
    // server/src/server/router/ir/router.ts:57-84; fervidex and kshook use
    // SetFervidexStyleRequestPermissions (auth.ts:144-145); USC answers with
    // its own codes (ir/usc/_playtype/router.ts:44-77).
    let gate =
        TestGate::start("[[auth.policy]]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]")
            .await;
    let (narrow, _, _) = gate.issue_key(1, &["customise_profile"]).await;
    let post = |path: &str, key: Option<&str>| {
        let mut r = gate.http.post(gate.url(path)).json(&json!({}));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let (status, v) = json_of(
        post("/ir/fervidex/score/submit", Some("nope"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        v,
        json!({"success": false, "error": "The provided API token does not correspond with any key in the database."})
    );
    let (status, v) = json_of(post("/ir/kshook/sv6c/score/save", None).await.unwrap()).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (401, Some("This endpoint requires authentication."))
    );
    let (status, v) = json_of(post("/ir/usc/Keyboard/scores", Some("nope")).await.unwrap()).await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({"statusCode": 41, "description": "Unauthorized."})
        )
    );
    let (status, v) = json_of(post("/ir/usc/Keyboard/scores", None).await.unwrap()).await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({"statusCode": 40, "description": "No auth token provided."})
        )
    );
    // A missing permission is the usual 403 everywhere.
    let (status, v) = json_of(
        post("/ir/usc/Keyboard/scores", Some(&narrow))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(v["description"].as_str().unwrap().contains("submit_score"));
    let (status, v) = json_of(post("/ir/direct-manual/import", None).await.unwrap()).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (401, Some("This endpoint requires authentication."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_follow_tachis_rules_order_and_words() {
    // server/src/server/router/api/v1/clients/router.ts:60-168 and IsValidURL
    // (server/src/utils/misc.ts:129-141).
    let gate = TestGate::start("[oauth]\nclient_cap = 1").await;
    let url = gate.url("/api/v1/clients/create");
    let client = |redirect: &str, webhook: Option<&str>| {
        json!({"name": "Native App", "redirectUri": redirect, "webhookUri": webhook,
               "apiKeyTemplate": null, "apiKeyFilename": null, "permissions": ["submit_score"]})
    };
    let (user, admin, fresh) = (gate.session(4), gate.session(5), gate.session(6));
    gate.upstream.add_user("root", 5, true);
    let create = |cookie: &String, body: Value| {
        let cookie = cookie.clone();
        let (gate, url) = (&gate, &url);
        async move { gate.post_as(url, &cookie, body).await }
    };
    // Native apps register tachi-<name>: schemes.
    let (status, v) = json_of(create(&user, client("tachi-myapp:callback", None)).await).await;
    assert_eq!(status, 200, "{v}");
    // At the cap, the cap is what is said, even with bad URLs.
    let (status, v) = json_of(create(&user, client("ftp://x", None)).await).await;
    assert_eq!(
        (status, v["description"].as_str()),
        (
            400,
            Some("You have created too many API clients. The current cap is 1.")
        )
    );
    // Tachi's administrators are exempt from the cap.
    for _ in 0..2 {
        let (status, v) = json_of(create(&admin, client(CB, None)).await).await;
        assert_eq!(status, 200, "{v}");
    }
    // Below the cap, the fields are judged in Tachi's words.
    for (body, description) in [
        (client("ftp://x", None), "Invalid Redirect URL."),
        (client(CB, Some("tachi-my.app:x")), "Invalid Webhook URL."),
        (
            json!({"name": "ab", "redirectUri": CB, "permissions": ["submit_score"]}),
            "[name] Expected a string with length between 3 and 80. (Received ab)",
        ),
        (
            json!({"name": "Fine", "redirectUri": CB, "permissions": []}),
            "Invalid permissions -- Need to require atleast one.",
        ),
        (
            json!({"name": "Fine", "redirectUri": CB, "permissions": ["submit_score"], "extra": 1}),
            "[null] Unexpected properties inside object: extra.",
        ),
    ] {
        let (status, v) = json_of(create(&fresh, body.clone()).await).await;
        assert_eq!(
            (status, v["description"].as_str()),
            (400, Some(description)),
            "{body}"
        );
    }
}
