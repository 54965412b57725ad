//! Operating the gate: rate limits and upstreams.

use crate::support::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_is_limited_per_ip_after_the_limit_and_not_before() {
    let (gate, base) = gate_with_admin("[limits]\noauth_requests = 5\nfailed_auths = 100").await;
    let s = gate.session(1);
    let (id, secret) = gate
        .create_client(&s, "https://example.com/cb", &["submit_score"])
        .await;
    for i in 0..5 {
        let code = gate.create_code(&s, json!({})).await;
        let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": "https://example.com/cb", "code": code})).await;
        assert_eq!(st, 200, "request {i}: {v}");
    }
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/token"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    assert_eq!(r.json::<Value>().await.unwrap()["success"], false);
    // The introspection and revocation endpoints share the limit.
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/introspect"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Other routes are not limited.
    assert_eq!(gate.get("/x").await.status(), 200);
    let text = scrape(&gate, &base).await;
    assert!(sample(&text, "tachi_gate_rate_limited_total{limit=\"oauth\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_key_checks_and_client_authentications_are_limited() {
    let gate = TestGate::start("[limits]\nfailed_auths = 3").await;
    let (key, id, secret) = gate.issue_key(1, &["submit_score"]).await;
    let introspect = |secret: &str, token: &str| {
        let r = gate
            .http
            .post(gate.url("/api/v1/oauth/introspect"))
            .basic_auth(&id, Some(secret))
            .form(&[("token", token)]);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..2 {
        assert_eq!(gate.get_with_key("/x", "guess").await.status(), 401);
    }
    // A failed client authentication counts too.
    assert_eq!(introspect("CSguess", "x").await, 401);
    // Further failing attempts from the IP are refused...
    let r = gate.get_with_key("/x", "guess").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(introspect("CSguess", "x").await, 429);
    // ...but good credentials never are: failed guesses cost only the guesser.
    assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    assert_eq!(introspect(&secret, &key).await, 200);
    // Requests without credentials are not affected.
    assert_eq!(gate.get("/x").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_integrator_never_meets_the_default_limits() {
    let gate = TestGate::start("").await;
    for user in 0..20 {
        let (key, _, _) = gate.issue_key(user, &["submit_score"]).await;
        for _ in 0..5 {
            assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_gives_504_json_and_others_are_unaffected() {
    let gate = TestGate::start("[upstream]\nread_timeout_ms = 300").await;
    let started = std::time::Instant::now();
    let r = gate.get("/slow/thing").await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"success": false, "description": "The Tachi server did not answer in time."})
    );
    assert_eq!(gate.get("/fast").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_is_skipped() {
    let a = MockTachi::start().await;
    let b = MockTachi::start().await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let dir = tempfile::tempdir().unwrap();
    let mut gate = TestGate::start_with_upstreams(
        "[upstream]\nhealth_check_secs = 1",
        &dir.path().join("store"),
        vec![b, a],
        &[a_addr, b_addr],
    )
    .await;
    // Both upstreams are the same Tachi, so both know the session.
    let cookie = gate.session(1);
    gate.others[0].add_session(&cookie, 1);
    let (id, secret) = gate
        .create_client(&cookie, "https://example.com/cb", &["submit_score"])
        .await;
    let code = gate.create_code(&cookie, json!({})).await;
    let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": "https://example.com/cb", "code": code})).await;
    assert_eq!(st, 200, "{v}");
    let key = v["body"]["token"].as_str().unwrap().to_string();
    for _ in 0..4 {
        assert_eq!(gate.get_with_key("/x", &key).await.status(), 200);
    }
    gate.others[0].stop();
    // Give Pingora's pool a moment to drop its idle connections to the stopped
    // upstream (a POST on a connection the upstream has just closed is not
    // retried); the health check has not run yet.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Right away (before a health check notices) and after: every request succeeds,
    // POSTs included, since a refused connect sent nothing.
    for i in 0..20 {
        let r = gate
            .http
            .post(gate.url("/ir/x"))
            .bearer_auth(&key)
            .body("b")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        if i == 9 {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_down_gives_502_json() {
    let mut a = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let addr = a.addr;
    let spare = MockTachi::start().await;
    let gate =
        TestGate::start_with_upstreams("", &dir.path().join("store"), vec![spare], &[addr]).await;
    a.stop();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = gate.get("/x").await;
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<Value>().await.unwrap()["description"],
        "The Tachi server is unavailable."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspecting_unknown_keys_counts_as_failed_checks() {
    let gate = TestGate::start("[limits]\nfailed_auths = 3").await;
    let (_, id, secret) = gate.issue_key(1, &["submit_score"]).await;
    for i in 0..3 {
        let r = gate
            .http
            .post(gate.url("/api/v1/oauth/introspect"))
            .basic_auth(&id, Some(&secret))
            .form(&[("token", format!("guess-{i}"))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = gate
        .http
        .post(gate.url("/api/v1/oauth/introspect"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", "guess-3")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
}
