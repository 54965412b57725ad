//! Racing operations: whatever the interleaving, the outcome is one of the
//! allowed ones, and nothing works once its end was acknowledged.

use std::sync::Arc;
use std::time::Instant;

use crate::support::alone::in_own_process;
use crate::support::*;
use reqwest::Method;
use serde_json::json;

const CB: &str = "https://example.com/cb";

/// Uses `key` from several tasks until told to stop; returns (start, status) pairs.
fn hammer(
    gate: &Arc<TestGate>,
    key: &str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(Instant, u16)>>> {
    (0..4)
        .map(|_| {
            let (gate, key, stop) = (gate.clone(), key.to_string(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let started = Instant::now();
                    let st = gate.get_with_key("/x", &key).await.status().as_u16();
                    seen.push((started, st));
                }
                seen
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<(Instant, u16)>>>) -> Vec<(Instant, u16)> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_use_of_a_key_succeeds_after_its_revocation_was_acknowledged() {
    revocation_race("").await;
}

/// The same race on one proxy thread, where the uses and the revocation share
/// a single-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revocation_race_on_one_proxy_thread() {
    if in_own_process("concurrency::the_revocation_race_on_one_proxy_thread") {
        return;
    }
    revocation_race("[server]\nthreads = 1\n").await;
}

/// Uses a key from several connections while it is revoked; `extra` is TOML
/// for the gate.
async fn revocation_race(extra: &str) {
    // Limits off: the hammering below would otherwise meet the failed-auth limit.
    let gate = Arc::new(TestGate::start(&format!("{extra}[limits]\nenabled = false")).await);
    let (key, _, _) = gate.issue_key(1, &["submit_score"]).await;
    let me = gate.session(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users = hammer(&gate, &key, &stop);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let r = gate
        .send_as(
            Method::DELETE,
            &format!("/api/v1/users/me/api-tokens/{key}"),
            &me,
        )
        .await;
    assert_eq!(r.status(), 200);
    let acknowledged = Instant::now();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = collect(users).await;
    assert!(
        seen.iter().any(|(_, st)| *st == 200),
        "the key worked before"
    );
    for (started, st) in &seen {
        assert!(matches!(st, 200 | 401), "unexpected {st}");
        if *started > acknowledged {
            assert_eq!(
                *st, 401,
                "a use that began after the revocation was acknowledged succeeded"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_client_while_its_keys_are_used_and_issued() {
    // Limits off: the hammering below would otherwise meet the failed-auth limit.
    let gate = Arc::new(TestGate::start("[limits]\nenabled = false").await);
    let me = gate.session(1);
    let (id, secret) = gate.create_client(&me, CB, &["submit_score"]).await;
    let code = gate.create_code(&me, json!({})).await;
    let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
    assert_eq!(st, 200);
    let key = v["body"]["token"].as_str().unwrap().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users = hammer(&gate, &key, &stop);
    // Exchanges racing the deletion: each either fails or issues a key that the
    // deletion then takes away.
    let issuers: Vec<_> = (0..4)
        .map(|_| {
            let (gate, me, id, secret) = (gate.clone(), me.clone(), id.clone(), secret.clone());
            tokio::spawn(async move {
                let mut keys = Vec::new();
                for _ in 0..10 {
                    let code = gate.create_code(&me, json!({})).await;
                    let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
                    match st {
                        200 => keys.push(v["body"]["token"].as_str().unwrap().to_string()),
                        404 => assert_eq!(v["error"], "invalid_client", "{v}"),
                        other => panic!("unexpected {other}: {v}"),
                    }
                }
                keys
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = gate
        .send_as(Method::DELETE, &format!("/api/v1/clients/{id}"), &me)
        .await;
    assert_eq!(r.status(), 200);
    let acknowledged = Instant::now();
    let mut issued = Vec::new();
    for t in issuers {
        issued.extend(t.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for (started, st) in collect(users).await {
        if started > acknowledged {
            assert_eq!(st, 401, "a key of a deleted client worked");
        }
    }
    for k in issued {
        assert_eq!(
            gate.get_with_key("/x", &k).await.status(),
            401,
            "a key issued before the deletion survived it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resetting_a_secret_during_exchanges() {
    // Limits off: the hammering below would otherwise meet the failed-auth limit.
    let gate = Arc::new(TestGate::start("[limits]\nenabled = false").await);
    let me = gate.session(1);
    let (id, old_secret) = gate.create_client(&me, CB, &["submit_score"]).await;
    let exchangers: Vec<_> = (0..4)
        .map(|_| {
            let (gate, me, id, secret) = (gate.clone(), me.clone(), id.clone(), old_secret.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for _ in 0..15 {
                    let code = gate.create_code(&me, json!({})).await;
                    let started = Instant::now();
                    let (st, v) = gate.token_json(json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
                    assert!(matches!(st, 200 | 403), "unexpected {st}: {v}");
                    outcomes.push((started, st));
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = gate
        .send_as(
            Method::POST,
            &format!("/api/v1/clients/{id}/reset-secret"),
            &me,
        )
        .await;
    assert_eq!(r.status(), 200);
    let acknowledged = Instant::now();
    let new_secret = r.json::<serde_json::Value>().await.unwrap()["body"]["clientSecret"]
        .as_str()
        .unwrap()
        .to_string();
    for t in exchangers {
        for (started, st) in t.await.unwrap() {
            if started > acknowledged {
                assert_eq!(
                    st, 403,
                    "the old secret worked after the reset was acknowledged"
                );
            }
        }
    }
    let code = gate.create_code(&me, json!({})).await;
    let (st, _) = gate.token_json(json!({"client_id": id, "client_secret": new_secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code})).await;
    assert_eq!(st, 200);
}
