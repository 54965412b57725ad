//! Several gates on one PostgreSQL database: the guarantees hold across
//! gates, revocations reach every gate within a second, and a database that
//! goes away costs answers (503) but never an acknowledged change. Each test
//! has a schema of its own on the server `TACHI_GATE_TEST_POSTGRES_URL`
//! names (see `support::postgres`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::postgres::{
    admin_sql, shared_session, two_gates, CutProxy, Line, PgGateProcess, PgSchema, ADMIN_TOKEN,
};
use crate::support::*;
use serde_json::{json, Value};

const CB: &str = "https://example.com/cb";

/// The exchange of `code` for a key, through `gate`; (status, body).
async fn exchange(gate: &TestGate, id: &str, secret: &str, code: &str) -> (u16, Value) {
    gate.token_json(json!({
        "client_id": id, "client_secret": secret, "grant_type": "authorization_code",
        "redirect_uri": CB, "code": code
    }))
    .await
}

/// The status of a keyed request through `gate`.
async fn use_key(gate: &TestGate, key: &str) -> u16 {
    gate.get_with_key("/api/v1/users/me", key)
        .await
        .status()
        .as_u16()
}

/// Polls `gate` with `key` until it answers `status`, failing with `why`
/// if that has not happened by `deadline`.
async fn answers_within(gate: &TestGate, key: &str, status: u16, deadline: Instant, why: &str) {
    while use_key(gate, key).await != status {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_made_through_one_gate_is_exchanged_through_the_other() {
    let schema = PgSchema::new().await;
    let (a, b) = two_gates(&schema, "").await;
    let cookie = shared_session(&a, &b, 1);
    let (id, secret) = a.create_client(&cookie, CB, &["submit_score"]).await;
    let code = a.create_code(&cookie, json!({})).await;
    let (status, body) = exchange(&b, &id, &secret, &code).await;
    assert_eq!(status, 200, "{body}");
    let key = body["body"]["token"].as_str().unwrap();
    assert_eq!(use_key(&a, key).await, 200);
    assert_eq!(use_key(&b, key).await, 200);
    // Spent on b, so a replay through a fails, and revokes the key on both.
    let (status, _) = exchange(&a, &id, &secret, &code).await;
    assert_eq!(status, 404);
    assert_eq!(use_key(&a, key).await, 401);
    // b hears of it by notice, within a second.
    let replayed = Instant::now();
    answers_within(&b, key, 401, replayed + Duration::from_secs(1), "not heard").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_sixteen_exchanges_of_one_code_across_two_gates_exactly_one_wins() {
    let schema = PgSchema::new().await;
    let (a, b) = two_gates(&schema, "").await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let cookie = shared_session(&a, &b, 1);
    let (id, secret) = a.create_client(&cookie, CB, &["submit_score"]).await;
    for round in 0..3 {
        let code = a.create_code(&cookie, json!({})).await;
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let gate = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (id, secret, code) = (id.clone(), secret.clone(), code.clone());
                tokio::spawn(async move { exchange(&gate, &id, &secret, &code).await.0 })
            })
            .collect();
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let winners = statuses.iter().filter(|s| **s == 200).count();
        assert_eq!(winners, 1, "round {round}: {statuses:?}");
        assert!(
            statuses.iter().all(|s| [200, 404].contains(s)),
            "{statuses:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_cap_holds_across_gates() {
    let schema = PgSchema::new().await;
    let (a, b) = two_gates(&schema, "[oauth]\nclient_cap = 3\n").await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let cookie = shared_session(&a, &b, 7);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let gate = if i % 2 == 0 { a.clone() } else { b.clone() };
            let cookie = cookie.clone();
            tokio::spawn(async move {
                gate.http
                    .post(gate.url("/api/v1/clients/create"))
                    .header("cookie", &cookie)
                    .json(
                        &json!({"name": "App", "redirectUri": CB, "permissions": ["submit_score"]}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            created += 1;
        }
    }
    assert_eq!(created, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_gate_is_refused_by_the_other_within_a_second() {
    let schema = PgSchema::new().await;
    let (a, b) = two_gates(&schema, "").await;
    let cookie = shared_session(&a, &b, 1);
    let (id, secret) = a.create_client(&cookie, CB, &["submit_score"]).await;
    for _ in 0..3 {
        let code = a.create_code(&cookie, json!({})).await;
        let (_, body) = exchange(&a, &id, &secret, &code).await;
        let key = body["body"]["token"].as_str().unwrap().to_string();
        // Held in b's memory.
        assert_eq!(use_key(&b, &key).await, 200);
        let revoked = a
            .send_as(
                reqwest::Method::DELETE,
                &format!("/api/v1/users/me/api-tokens/{key}"),
                &cookie,
            )
            .await;
        assert_eq!(revoked.status(), 200);
        let started = Instant::now();
        answers_within(
            &b,
            &key,
            401,
            started + Duration::from_secs(1),
            "b still accepts a key revoked on a",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_killed_under_load_loses_no_acknowledged_change() {
    let schema = PgSchema::new().await;
    let mock = MockTachi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut victim = PgGateProcess::spawn(&schema, mock.addr, &dir.path().join("a"));
    let survivor = PgGateProcess::spawn(&schema, mock.addr, &dir.path().join("b"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let cookie = "connect.sid=pg-kill-1";
    mock.add_session(cookie, 1);
    let client: Value = http
        .post(format!("{}/api/v1/clients/create", victim.base))
        .header("cookie", cookie)
        .json(&json!({"name": "App", "redirectUri": CB, "permissions": ["submit_score"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = client["body"]["clientID"].as_str().unwrap().to_string();
    let secret = client["body"]["clientSecret"].as_str().unwrap().to_string();
    // key → whether its revocation was acknowledged.
    let acknowledged: Arc<Mutex<HashMap<String, bool>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (http, base) = (http.clone(), victim.base.clone());
            let (id, secret, acks) = (id.clone(), secret.clone(), acknowledged.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let Ok(r) = http
                        .post(format!("{base}/api/v1/oauth/create-code"))
                        .header("cookie", cookie)
                        .json(&json!({}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>().await else {
                        return;
                    };
                    let Some(code) = v["body"]["code"].as_str() else {
                        return;
                    };
                    let Ok(r) = http
                        .post(format!("{base}/api/v1/oauth/token"))
                        .json(&json!({"client_id": id, "client_secret": secret,
                            "grant_type": "authorization_code", "redirect_uri": CB, "code": code}))
                        .send()
                        .await
                    else {
                        return;
                    };
                    let Ok(v) = r.json::<Value>().await else {
                        return;
                    };
                    let Some(key) = v["body"]["token"].as_str().map(String::from) else {
                        return;
                    };
                    acks.lock().unwrap().insert(key.clone(), false);
                    if n % 3 == 0 {
                        let Ok(r) = http
                            .delete(format!("{base}/api/v1/users/me/api-tokens/{key}"))
                            .header("cookie", cookie)
                            .send()
                            .await
                        else {
                            // Unanswered: it may or may not have happened.
                            acks.lock().unwrap().remove(&key);
                            return;
                        };
                        if r.status() == 200 {
                            acks.lock().unwrap().insert(key, true);
                        } else {
                            acks.lock().unwrap().remove(&key);
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.child.kill().unwrap();
    let _ = victim.child.wait();
    for w in workers {
        let _ = w.await;
    }
    let acks = acknowledged.lock().unwrap().clone();
    assert!(acks.len() >= 5, "too little load: {} keys", acks.len());
    assert!(acks.values().any(|r| *r), "no revocation was acknowledged");
    for (key, revoked) in &acks {
        let status = http
            .get(format!("{}/api/v1/users/me", survivor.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        let wanted = if *revoked { 401 } else { 200 };
        assert_eq!(status, wanted, "key revoked: {revoked}");
    }
    let listed: Value = http
        .get(format!("{}/admin/keys?user=1", survivor.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let live = acks.values().filter(|r| !**r).count();
    let held = listed["body"].as_array().map(Vec::len).unwrap_or(0);
    assert!(held >= live, "{held} keys listed, {live} acknowledged");
}

/// The answer to `req`, and how long it took.
async fn timed(req: reqwest::RequestBuilder) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    (status, retry, body, started.elapsed())
}

/// What a stream of writes saw: every answer's status and time, and the
/// keys whose exchange was acknowledged.
#[derive(Default)]
struct Writes {
    answers: Vec<(u16, Duration)>,
    acknowledged: Vec<String>,
}

/// Makes codes and exchanges them through `gate`, one after another,
/// until `stop` turns true.
fn stream_of_writes(
    gate: Arc<TestGate>,
    cookie: String,
    id: String,
    secret: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Writes> {
    tokio::spawn(async move {
        let mut seen = Writes::default();
        while !*stop.borrow() {
            let (status, _, body, took) = timed(
                gate.http
                    .post(gate.url("/api/v1/oauth/create-code"))
                    .header("cookie", &cookie)
                    .json(&json!({})),
            )
            .await;
            seen.answers.push((status, took));
            if let Some(code) = body["body"]["code"].as_str() {
                let (status, _, body, took) = timed(
                    gate.http
                        .post(gate.url("/api/v1/oauth/token"))
                        .json(&json!({
                            "client_id": id, "client_secret": secret,
                            "grant_type": "authorization_code", "redirect_uri": CB, "code": code
                        })),
                )
                .await;
                seen.answers.push((status, took));
                if let (200, Some(key)) = (status, body["body"]["token"].as_str()) {
                    seen.acknowledged.push(key.to_string());
                }
            }
            // Well under the token endpoint's rate limit.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    })
}

/// Down, then back: held keys answer throughout; everything that needs
/// the database is 503 with `Retry-After` within the timeout, never 500,
/// while writes keep coming; `/healthz` says so; and the gate recovers by
/// itself with every acknowledged write kept.
async fn the_database_goes_away(line: Line) {
    let schema = PgSchema::new().await;
    let proxy = CutProxy::start().await;
    let admin_port = free_port();
    let conf = format!(
        "[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n{}",
        schema.store_toml(Some(proxy.addr), 1_000)
    );
    let dir = tempfile::tempdir().unwrap();
    let gate =
        Arc::new(TestGate::start_on(&conf, &dir.path().join("s"), MockTachi::start().await).await);
    let health = format!("http://127.0.0.1:{admin_port}/healthz");
    let (held, id, secret) = gate.issue_key(1, &["submit_score"]).await;
    let (unheld, _, _) = gate.issue_key(2, &["submit_score"]).await;
    assert_eq!(use_key(&gate, &held).await, 200);
    let cookie = gate.session(1);
    let code = gate.create_code(&cookie, json!({})).await;
    let (stop_writing, writing) = tokio::sync::watch::channel(false);
    let writes = stream_of_writes(
        gate.clone(),
        gate.session(3),
        id.clone(),
        secret.clone(),
        writing,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.set(line);
    // The gate notices within its ping and timeout.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let limit = Duration::from_millis(2_500);
    assert_eq!(use_key(&gate, &held).await, 200, "a held key still answers");
    let (status, retry, body, took) = timed(
        gate.http
            .get(gate.url("/api/v1/users/me"))
            .bearer_auth(&unheld),
    )
    .await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")), "{body}");
    assert!(took < limit, "an unknown key took {took:?}");
    let (status, retry, _, took) = timed(gate.http.post(gate.url("/api/v1/oauth/token")).json(
        &json!({
            "client_id": id, "client_secret": secret, "grant_type": "authorization_code",
            "redirect_uri": CB, "code": code
        }),
    ))
    .await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")));
    assert!(took < limit, "an exchange took {took:?}");
    let (status, _, _, took) = timed(
        gate.http
            .post(gate.url("/api/v1/clients/create"))
            .header("cookie", &cookie)
            .json(&json!({"name": "App", "redirectUri": CB, "permissions": ["submit_score"]})),
    )
    .await;
    assert_eq!(status, 503);
    assert!(took < limit, "a write took {took:?}");
    let (status, retry, body, _) = timed(gate.http.get(&health)).await;
    assert_eq!((status, retry.as_deref()), (503, Some("1")));
    let said = body["description"].as_str().unwrap_or_default();
    assert!(
        said.contains("keys held in memory are still checked"),
        "{said}"
    );

    proxy.set(Line::Open);
    let started = Instant::now();
    loop {
        let (status, _, _, _) = timed(gate.http.get(&health)).await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back without a restart, with nothing acknowledged lost.
    assert_eq!(use_key(&gate, &unheld).await, 200);
    assert_eq!(use_key(&gate, &held).await, 200);
    let (status, body) = exchange(&gate, &id, &secret, &code).await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_writing.send(true);
    let writes = writes.await.unwrap();
    let refused = writes.answers.iter().filter(|(s, _)| *s == 503).count();
    assert!(refused > 0, "no write was made during the outage");
    for (status, took) in &writes.answers {
        assert!([200, 503].contains(status), "a write answered {status}");
        assert!(*took < limit, "a write took {took:?}");
    }
    assert!(!writes.acknowledged.is_empty(), "no write was acknowledged");
    for key in &writes.acknowledged {
        assert_eq!(
            use_key(&gate, key).await,
            200,
            "an acknowledged key is lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_closes_its_connections_costs_answers_not_changes() {
    the_database_goes_away(Line::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_costs_at_most_the_timeout() {
    the_database_goes_away(Line::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_ended_by_the_server_are_replaced_and_revocations_still_reach_both_gates() {
    let schema = PgSchema::new().await;
    let (a, b) = two_gates(&schema, "").await;
    let cookie = shared_session(&a, &b, 1);
    let (id, secret) = a.create_client(&cookie, CB, &["submit_score"]).await;
    let mut keys = Vec::new();
    for _ in 0..2 {
        let code = a.create_code(&cookie, json!({})).await;
        let (_, body) = exchange(&a, &id, &secret, &code).await;
        let key = body["body"]["token"].as_str().unwrap().to_string();
        assert_eq!(use_key(&b, &key).await, 200);
        keys.push(key);
    }
    assert!(schema.terminate_connections().await >= 2);
    // The database still answers, so b forgets what it held (it cannot
    // know what was revoked meanwhile); everything is back within moments.
    let started = Instant::now();
    loop {
        let made = a
            .http
            .post(a.url("/api/v1/oauth/create-code"))
            .header("cookie", &cookie)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let made: Value = made.json().await.unwrap();
        if let Some(code) = made["body"]["code"].as_str() {
            if exchange(&b, &id, &secret, code).await.0 == 200 && use_key(&b, &keys[0]).await == 200
            {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // b re-listens, forgetting what it held, then holds keys[1] again:
    // it answers for it while the database no longer has it.
    let hidden = hex::encode(tachi_gate::store::digest(&keys[1]));
    let elsewhere = hex::encode([0u8; 32]);
    let move_row = |from: &str, to: &str| {
        format!(
            "UPDATE {}.keys SET digest = '\\x{to}' WHERE digest = '\\x{from}'",
            schema.name
        )
    };
    let started = Instant::now();
    loop {
        assert_eq!(use_key(&b, &keys[1]).await, 200);
        admin_sql(&move_row(&hidden, &elsewhere)).await;
        let held = use_key(&b, &keys[1]).await;
        admin_sql(&move_row(&elsewhere, &hidden)).await;
        if held == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "b does not hold keys again"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // So a revocation on a can only reach it as a notice.
    let started = Instant::now();
    let revoked = loop {
        let r = a
            .send_as(
                reqwest::Method::DELETE,
                &format!("/api/v1/users/me/api-tokens/{}", keys[1]),
                &cookie,
            )
            .await;
        if r.status() == 200 {
            break Instant::now();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no recovery");
    };
    answers_within(
        &b,
        &keys[1],
        401,
        revoked + Duration::from_secs(1),
        "not heard",
    )
    .await;
    assert_eq!(use_key(&b, &keys[0]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_cannot_listen_but_reaches_the_database_serves_no_revoked_key() {
    let schema = PgSchema::new().await;
    let proxy = CutProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = TestGate::start_on(
        &schema.store_toml(None, 2_000),
        &dir.path().join("a"),
        MockTachi::start().await,
    )
    .await;
    let b = TestGate::start_on(
        &schema.store_toml(Some(proxy.addr), 2_000),
        &dir.path().join("b"),
        MockTachi::start().await,
    )
    .await;
    let cookie = shared_session(&a, &b, 1);
    let (id, secret) = a.create_client(&cookie, CB, &["submit_score"]).await;
    let code = a.create_code(&cookie, json!({})).await;
    let (_, body) = exchange(&a, &id, &secret, &code).await;
    let key = body["body"]["token"].as_str().unwrap().to_string();
    assert_eq!(use_key(&b, &key).await, 200, "held by b");
    // b keeps its pooled connections but cannot listen again.
    proxy.set(Line::NoNew);
    assert!(schema.terminate_listeners().await >= 1);
    let started = Instant::now();
    loop {
        let r = a
            .send_as(
                reqwest::Method::DELETE,
                &format!("/api/v1/users/me/api-tokens/{key}"),
                &cookie,
            )
            .await;
        if r.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a cannot revoke"
        );
    }
    let revoked = Instant::now();
    answers_within(
        &b,
        &key,
        401,
        revoked + Duration::from_secs(3),
        "b still accepts a key revoked on a while deaf to notices",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_keys_stop_answering_once_the_database_has_been_gone_too_long() {
    let schema = PgSchema::new().await;
    let proxy = CutProxy::start().await;
    // 150 ms: held keys answer for 30 times that, 4.5 s.
    let gate = TestGate::start(&schema.store_toml(Some(proxy.addr), 150)).await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    assert_eq!(use_key(&gate, &key).await, 200);
    proxy.set(Line::Cut);
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(use_key(&gate, &key).await, 200, "held at first");
    answers_within(
        &gate,
        &key,
        503,
        cut + Duration::from_secs(8),
        "a held key still answers long after the database went",
    )
    .await;
    assert!(
        cut.elapsed() >= Duration::from_secs(4),
        "{:?}",
        cut.elapsed()
    );
    proxy.set(Line::Open);
    let back = Instant::now();
    answers_within(
        &gate,
        &key,
        200,
        back + Duration::from_secs(5),
        "no recovery",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_copy_moves_everything_both_ways_and_again_harmlessly() {
    let schema = PgSchema::new().await;
    let dir = tempfile::tempdir().unwrap();
    let sled = dir.path().join("sled");
    // A sled store with a client and keys, made by a gate.
    let mut gate = TestGate::start_on("", &sled, MockTachi::start().await).await;
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let (gone, _, _) = gate.issue_key(2, &["submit_score"]).await;
    let cookie = gate.session(2);
    let listed: Value = gate
        .send_as(reqwest::Method::GET, "/api/v1/users/me/api-tokens", &cookie)
        .await
        .json()
        .await
        .unwrap();
    let gone_id = listed["body"][0]["tokenID"].as_str().unwrap().to_string();
    let r = gate
        .send_as(
            reqwest::Method::DELETE,
            &format!("/api/v1/users/me/api-tokens/{gone_id}"),
            &cookie,
        )
        .await;
    assert_eq!(r.status(), 200);
    gate.shutdown();
    let url = schema.url();
    let copy = |from: String, to: String| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tachi-gate"))
            .args(["store", "copy", "--from", &from, "--to", &to])
            .env("RUST_LOG", "off")
            .env("TACHI_GATE_STORE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let counts: Value = serde_json::from_slice(&out.stdout).unwrap();
        (String::from_utf8_lossy(&out.stderr).to_string(), counts)
    };
    let sled_text = sled.display().to_string();
    let (said, counts) = copy(sled_text.clone(), url.clone());
    assert!(said.starts_with("Copied 2 clients"), "{said}");
    assert_eq!(
        (
            counts["clientsAdded"].as_u64(),
            counts["keysAdded"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // Again, the URL from the environment rather than the command line.
    let (_, again) = copy(sled_text, "env:".into());
    assert_eq!(
        (
            again["clientsAdded"].as_u64(),
            again["keysPresent"].as_u64()
        ),
        (Some(0), Some(1))
    );
    // And back, into an empty sled store, from libpq's key-value form.
    let server = url::Url::parse(&schema.url()).unwrap();
    let mut key_value = format!(
        "host={} port={} user={} dbname={} options='-c search_path={}'",
        server.host_str().unwrap(),
        server.port().unwrap_or(5432),
        server.username(),
        server.path().trim_start_matches('/'),
        schema.name
    );
    if let Some(password) = server.password() {
        key_value.push_str(&format!(" password={password}"));
    }
    let back = dir.path().join("back");
    let (_, counts) = copy(key_value, back.display().to_string());
    assert_eq!(
        (
            counts["clientsAdded"].as_u64(),
            counts["keysAdded"].as_u64()
        ),
        (Some(2), Some(1))
    );
    // The copied key works on a gate on the database; the revoked one does not.
    let pg_gate = TestGate::start(&schema.store_toml(None, 2_000)).await;
    assert_eq!(use_key(&pg_gate, &key).await, 200);
    assert_eq!(use_key(&pg_gate, &gone).await, 401);
}
