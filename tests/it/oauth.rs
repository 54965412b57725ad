//! The OAuth2 routes through real sockets: the whole flow, the token endpoint's status
//! table in both styles, PKCE, binding, expiry, single use and replay.

use crate::support::alone::in_own_process;
use crate::support::*;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Digest as _;

const CB: &str = "https://example.com/cb";

fn basic(id: &str, secret: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    format!("Basic {enc}")
}

async fn token_form(
    gate: &TestGate,
    auth: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = gate.http.post(gate.url("/api/v1/oauth/token")).form(form);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap())
}

/// A user, a client and a fresh code, ready for an exchange.
struct Setup {
    cookie: String,
    id: String,
    secret: String,
    code: String,
}

async fn setup(gate: &TestGate, code_params: Value) -> Setup {
    let cookie = gate.session(7);
    let (id, secret) = gate
        .create_client(&cookie, CB, &["submit_score", "customise_profile"])
        .await;
    let code = gate.create_code(&cookie, code_params).await;
    Setup {
        cookie,
        id,
        secret,
        code,
    }
}

fn exchange_json(s: &Setup) -> Value {
    json!({"client_id": s.id, "client_secret": s.secret, "grant_type": "authorization_code",
           "redirect_uri": CB, "code": s.code})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_reaches_upstream_with_identity_and_no_authorization() {
    whole_flow("").await;
}

/// One proxy thread runs a single-thread runtime rather than Pingora's
/// work-stealing one: the same flow, through the other scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_on_one_proxy_thread() {
    if in_own_process("oauth::whole_flow_on_one_proxy_thread") {
        return;
    }
    whole_flow("[server]\nthreads = 1").await;
}

/// Registers a client, issues a code and exchanges it, then forwards a
/// request with the key; `extra` is the gate's TOML.
async fn whole_flow(extra: &str) {
    let gate = TestGate::start(extra).await;
    let s = setup(&gate, json!({})).await;

    let resp = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .json(&exchange_json(&s))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["pragma"], "no-cache");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["description"], "Successfully authenticated.");
    let key = v["body"]["token"].as_str().unwrap();
    assert_eq!(key.len(), 40);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(v["access_token"], key);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "customise_profile submit_score");
    assert_eq!(v["body"]["userID"], 7);
    assert_eq!(v["body"]["identifier"], "Epic Games Token");
    assert_eq!(v["body"]["fromAPIClient"], s.id);
    assert_eq!(
        v["body"]["permissions"],
        json!({"customise_profile": true, "submit_score": true})
    );

    let echo: Value = gate
        .http
        .post(gate.url("/ir/direct-manual/import?x=1"))
        .bearer_auth(key)
        .body("payload")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["echo"], true);
    assert_eq!(echo["path"], "/ir/direct-manual/import");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["body"], "payload");
    assert_eq!(echoed_headers(&echo, "x-tachi-user-id"), vec!["7"]);
    assert_eq!(
        echoed_headers(&echo, "x-tachi-permissions"),
        vec!["customise_profile,submit_score"]
    );
    assert_eq!(
        echoed_headers(&echo, "x-tachi-client-id"),
        vec![s.id.clone()]
    );
    assert_eq!(echoed_headers(&echo, "x-tachi-token-id").len(), 1);
    assert!(echoed_headers(&echo, "authorization").is_empty());
    assert_eq!(echoed_headers(&echo, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echoed_headers(&echo, "x-forwarded-proto"), vec!["http"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_code_answers_code_user_and_time() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(3);
    let resp = gate
        .send_as(Method::POST, "/api/v1/oauth/create-code", &cookie)
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["description"], "Successfully created code.");
    assert_eq!(v["body"]["userID"], 3);
    assert_eq!(v["body"]["code"].as_str().unwrap().len(), 40);
    let created = v["body"]["createdOn"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(created <= now && now - created < 60_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_code_refuses_guests_keys_and_bad_parameters() {
    let gate = TestGate::start("").await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let url = gate.url("/api/v1/oauth/create-code");

    let r = gate.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["description"],
        "You are not authenticated."
    );
    let r = gate.http.post(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 401, "API keys cannot create codes");
    let r = gate
        .http
        .post(&url)
        .header("cookie", "connect.sid=unknown")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a dead session is no session");

    let cookie = gate.session(1);
    let r = gate
        .post_as(&url, &cookie, json!({"clientID": "CIdoesnotexist"}))
        .await;
    assert_eq!(r.status(), 404);
    let r = gate
        .http
        .post(format!("{url}?clientID=CInope"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "clientID from the query string too");
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let r = gate
        .post_as(
            &url,
            &cookie,
            json!({"code_challenge": challenge, "code_challenge_method": "S512"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let r = gate
        .post_as(&url, &cookie, json!({"code_challenge_method": "S256"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = gate.post_as(&url, &cookie, json!({"clientID": 5})).await;
    assert_eq!(r.status(), 400);
    let r = gate
        .http
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_status_table_in_tachi_json_style() {
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    let base = exchange_json(&s);
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (without("code"), 400, "invalid_request"),
        // No client authentication: Tachi's 400, with RFC 6749 §5.2's code.
        (without("client_secret"), 400, "invalid_client"),
        (with("code", json!(5)), 400, "invalid_request"),
        (
            with("grant_type", json!("client_credentials")),
            400,
            "unsupported_grant_type",
        ),
        (with("client_id", json!("CInope")), 404, "invalid_client"),
        (
            with("client_secret", json!("CSwrong")),
            403,
            "invalid_client",
        ),
        (
            with("redirect_uri", json!("https://evil.example/cb")),
            400,
            "invalid_grant",
        ),
        (
            with("code", json!("0000000000000000000000000000000000000000")),
            404,
            "invalid_grant",
        ),
        (
            with("code_verifier", json!("a".repeat(43))),
            400,
            "invalid_grant",
        ),
    ];
    for (body, status, error) in cases {
        let (got, v) = gate.token_json(body.clone()).await;
        assert_eq!(got, status, "{body} -> {v}");
        assert_eq!(v["error"], error, "{body} -> {v}");
        assert_eq!(v["success"], false);
        assert!(v["description"].is_string() && v["error_description"] == v["description"]);
    }
    // None of the failures spent the code.
    let (got, v) = gate.token_json(base.clone()).await;
    assert_eq!(got, 200, "{v}");
    // Used code.
    let (got, v) = gate.token_json(base).await;
    assert_eq!((got, v["error"].as_str()), (404, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_status_table_in_form_and_basic_style() {
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    let good = basic(&s.id, &s.secret);
    // Malformed / missing.
    let (st, _, v) = token_form(&gate, Some(&good), &[("grant_type", "authorization_code")]).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    let (st, _, v) = token_form(
        &gate,
        Some(&good),
        &[("grant_type", "password"), ("code", "x")],
    )
    .await;
    assert_eq!(
        (st, v["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    // Unknown client and wrong secret by Basic: 401 with a Basic challenge.
    let fr: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", &s.code),
        ("redirect_uri", CB),
    ];
    let (st, h, v) = token_form(&gate, Some(&basic("CInope", "x")), &fr).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let (st, h, v) = token_form(&gate, Some(&basic(&s.id, "CSwrong")), &fr).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(h.contains_key("www-authenticate"));
    // Body credentials in a form: 401, with a challenge all the same (RFC
    // 6749 §5.2: every 401 from the token endpoint carries one).
    let mut body_auth = fr.clone();
    body_auth.push(("client_id", s.id.as_str()));
    body_auth.push(("client_secret", "CSwrong"));
    let (st, h, v) = token_form(&gate, None, &body_auth).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(h["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    // No client authentication at all: invalid_client, 401, challenged.
    let (st, h, v) = token_form(&gate, None, &fr).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("invalid_client")));
    assert!(h.contains_key("www-authenticate"));
    // A parameter sent empty counts as missing (RFC 6749 §3.2).
    let mut empty_code = fr.clone();
    empty_code[1] = ("code", "");
    let (st, _, v) = token_form(&gate, Some(&good), &empty_code).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    let empty_grant = [
        ("grant_type", ""),
        ("code", s.code.as_str()),
        ("redirect_uri", CB),
    ];
    let (st, _, v) = token_form(&gate, Some(&good), &empty_grant).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    // Basic and a body secret together.
    let mut both = fr.clone();
    both.push(("client_secret", s.secret.as_str()));
    let (st, _, v) = token_form(&gate, Some(&good), &both).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    // A body client_id that disagrees with Basic.
    let mut other_id = fr.clone();
    other_id.push(("client_id", "CIother"));
    let (st, _, v) = token_form(&gate, Some(&good), &other_id).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_request")));
    // Redirect mismatch, unknown code.
    let (st, _, v) = token_form(
        &gate,
        Some(&good),
        &[
            ("grant_type", "authorization_code"),
            ("code", &s.code),
            ("redirect_uri", "https://x.example/"),
        ],
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    let (st, _, v) = token_form(
        &gate,
        Some(&good),
        &[
            ("grant_type", "authorization_code"),
            ("code", "ffff"),
            ("redirect_uri", CB),
        ],
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")));
    // Basic with a JSON body also answers in RFC 6749 statuses.
    let resp = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .header("authorization", basic(&s.id, "CSwrong"))
        .json(&json!({"grant_type": "authorization_code", "code": s.code, "redirect_uri": CB}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Still unspent: the right request succeeds, with a matching body client_id.
    let mut ok = fr.clone();
    ok.push(("client_id", s.id.as_str()));
    let (st, h, v) = token_form(&gate, Some(&good), &ok).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(v["token_type"], "Bearer");
    // Body credentials in a form succeed too.
    let code2 = gate.create_code(&s.cookie, json!({})).await;
    let (st, _, v) = token_form(
        &gate,
        None,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code2),
            ("redirect_uri", CB),
            ("client_id", &s.id),
            ("client_secret", &s.secret),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refuses_other_content_types_and_methods() {
    let gate = TestGate::start("").await;
    let url = gate.url("/api/v1/oauth/token");
    let r = gate
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .body("code=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = gate.http.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    for m in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let r = gate.http.request(m, &url).send().await.unwrap();
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
        assert_eq!(r.json::<Value>().await.unwrap()["success"], false);
    }
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_s256_and_plain() {
    let gate = TestGate::start("").await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    for (method, challenge) in [("S256", s256(verifier)), ("plain", verifier.to_string())] {
        let s = setup(
            &gate,
            json!({"code_challenge": challenge, "code_challenge_method": method}),
        )
        .await;
        let mut req = exchange_json(&s);
        // Missing verifier.
        let (st, v) = gate.token_json(req.clone()).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{method}"
        );
        // Wrong verifier.
        req["code_verifier"] = json!("x".repeat(43));
        let (st, v) = gate.token_json(req.clone()).await;
        assert_eq!(
            (st, v["error"].as_str()),
            (400, Some("invalid_grant")),
            "{method}"
        );
        // Malformed verifier.
        req["code_verifier"] = json!("short");
        let (st, _) = gate.token_json(req.clone()).await;
        assert_eq!(st, 400, "{method}");
        // Right verifier, after all the failures.
        req["code_verifier"] = json!(verifier);
        let (st, v) = gate.token_json(req).await;
        assert_eq!(st, 200, "{method}: {v}");
    }
    // No method means plain.
    let s = setup(&gate, json!({"code_challenge": verifier})).await;
    let mut req = exchange_json(&s);
    req["code_verifier"] = json!(verifier);
    assert_eq!(gate.token_json(req).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_bound_to_one_client_is_refused_to_another() {
    let gate = TestGate::start("").await;
    let cookie = gate.session(9);
    let (a, _) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let (b, b_secret) = gate.create_client(&cookie, CB, &["submit_score"]).await;
    let code = gate.create_code(&cookie, json!({"clientID": a})).await;
    let (st, v) = gate.token_json(json!({"client_id": b, "client_secret": b_secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
    assert_eq!((st, v["error"].as_str()), (404, Some("invalid_grant")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire() {
    let gate = TestGate::start("[oauth]\ncode_ttl_secs = 1").await;
    let s = setup(&gate, json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (st, v) = gate.token_json(exchange_json(&s)).await;
    assert_eq!(
        (st, v["error"].as_str()),
        (404, Some("invalid_grant")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exchanges_of_one_code_have_exactly_one_winner() {
    let gate = std::sync::Arc::new(TestGate::start("").await);
    let s = setup(&gate, json!({})).await;
    let body = exchange_json(&s);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let (g, b) = (gate.clone(), body.clone());
        tasks.push(tokio::spawn(async move { g.token_json(b).await }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            200 => wins.push(v["body"]["token"].as_str().unwrap().to_string()),
            404 => assert_eq!(v["error"], "invalid_grant"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(wins.len(), 1, "exactly one exchange wins");
    // Every loser was a replay by the winning client, so the key was revoked.
    let r = gate.get_with_key("/x", &wins[0]).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_code_revokes_its_key() {
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    let (st, v) = gate.token_json(exchange_json(&s)).await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    let r = gate.get_with_key("/api/v1/users/me", &key).await;
    assert_eq!(r.status(), 200);
    let (st, _) = gate.token_json(exchange_json(&s)).await;
    assert_eq!(st, 404);
    let r = gate.get_with_key("/api/v1/users/me", &key).await;
    assert_eq!(r.status(), 401, "the key from a replayed code is revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_another_client_revokes_too() {
    // An unbound code intercepted and spent by another client first: the
    // rightful client's later attempt is a replay, and kills the other's key.
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    let interceptor = gate.session(8);
    let (b, b_secret) = gate
        .create_client(&interceptor, CB, &["submit_score"])
        .await;
    let (st, v) = gate.token_json(json!({"client_id": b, "client_secret": b_secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": s.code})).await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    let (st, v) = gate.token_json(exchange_json(&s)).await;
    assert_eq!((st, v["error"].as_str()), (404, Some("invalid_grant")));
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 401);
    // A client that fails to authenticate revokes nothing.
    let s = setup(&gate, json!({})).await;
    let (st, v) = gate.token_json(exchange_json(&s)).await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    let (st, _) = gate.token_json(json!({"client_id": b, "client_secret": "wrong", "grant_type": "authorization_code", "redirect_uri": CB, "code": s.code})).await;
    assert_eq!(st, 403);
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_code_replayed_by_another_client_revokes_nothing() {
    // Letting any client revoke through another's bound code would let it
    // cut off that client's users: only the bound client's replay revokes.
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    let cookie = gate.session(1);
    let bound = gate.create_code(&cookie, json!({"clientID": s.id})).await;
    let (st, v) = gate
        .token_json(json!({"client_id": s.id, "client_secret": s.secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": bound}))
        .await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    let other = gate.session(8);
    let (b, b_secret) = gate.create_client(&other, CB, &["submit_score"]).await;
    let (st, _) = gate
        .token_json(json!({"client_id": b, "client_secret": b_secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": bound}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    // The bound client's own replay does revoke it.
    let (st, _) = gate
        .token_json(json!({"client_id": s.id, "client_secret": s.secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": bound}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_at_the_token_endpoint_empty_bearer_and_repeated_members() {
    let gate = TestGate::start("").await;
    let s = setup(&gate, json!({})).await;
    // A Bearer header authenticates no client: 401, challenged (RFC 6749 §5.2).
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .bearer_auth("whatever")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", s.code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    // An empty Bearer token is a malformed request (RFC 6750 §3.1).
    let r = raw_request(
        gate.addr,
        b"GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"tachi\", error=\"invalid_request\"")
    );
    // A JSON member given twice: which one counts would be a guess.
    let body = format!(
        r#"{{"client_id": "{}", "client_secret": "{}", "grant_type": "authorization_code", "redirect_uri": "{CB}", "code": "x", "code": "{}"}}"#,
        s.id, s.secret, s.code
    );
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    // Neither spent the code.
    let (st, _) = gate.token_json(exchange_json(&s)).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_oauth2_client_library_exchanges_codes() {
    use oauth2::basic::BasicClient;
    use oauth2::{
        AuthType, AuthorizationCode, ClientId, ClientSecret, PkceCodeChallenge, RedirectUrl,
        TokenResponse, TokenUrl,
    };

    let gate = TestGate::start("").await;
    let cookie = gate.session(11);
    let (id, secret) = gate
        .create_client(&cookie, CB, &["submit_score", "manage_rivals"])
        .await;
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let code = gate
            .create_code(
                &cookie,
                json!({"code_challenge": challenge.as_str(), "code_challenge_method": "S256"}),
            )
            .await;
        let client = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_token_uri(TokenUrl::new(gate.url("/api/v1/oauth/token")).unwrap())
            .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap())
            .set_auth_type(auth.clone());
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        let scopes: Vec<String> = token
            .scopes()
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(scopes, vec!["manage_rivals", "submit_score"]);
        let r = gate
            .http
            .get(gate.url("/x"))
            .bearer_auth(token.access_token().secret())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // A wrong secret surfaces as a standard invalid_client error.
    let code = gate.create_code(&cookie, json!({})).await;
    let client = BasicClient::new(ClientId::new(id))
        .set_client_secret(ClientSecret::new("CSwrong".into()))
        .set_token_uri(TokenUrl::new(gate.url("/api/v1/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(CB.into()).unwrap());
    let err = client
        .exchange_code(AuthorizationCode::new(code))
        .request_async(&http)
        .await
        .unwrap_err();
    match err {
        oauth2::RequestTokenError::ServerResponse(r) => {
            assert_eq!(r.error().as_ref(), "invalid_client")
        }
        other => panic!("expected a server error response, got {other:?}"),
    }
}
