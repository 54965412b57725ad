//! Crash safety under load: a gate process is killed with SIGKILL at random
//! moments (during start-up too) while clients issue, use and revoke keys and
//! delete clients, then restarted on the same store, cycle after cycle. After
//! every restart, whatever was acknowledged holds:
//!
//! - every acknowledged key works, unless its revocation (or its client's
//!   deletion) was acknowledged, and then it never works again;
//! - no consumed code can be exchanged again;
//! - deleted clients stay deleted;
//! - the per-user and per-client key indexes agree with each other;
//! - start-up never panics.
//!
//! `TACHI_GATE_CRASH_CYCLES` sets the number of cycles (default 6; the long
//! run in the README uses 200) and `TACHI_GATE_CRASH_SEED` replays a run.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_tachi-gate");
const CB: &str = "https://example.com/cb";
const ADMIN: &str = "crash-test-admin-token";
const USERS: u64 = 3;

fn cookie(user: u64) -> String {
    format!("connect.sid=crash-{user}")
}

/// What the gate acknowledged, as the clients saw it.
#[derive(Default)]
struct Ledger {
    /// client ID → secret, for live clients.
    clients: HashMap<String, String>,
    deleted_clients: HashSet<String>,
    /// key → (client, token ID, user) for acknowledged keys.
    keys: HashMap<String, (String, String, u64)>,
    revoked: HashSet<String>,
    /// (client, code, key) exchanged successfully.
    consumed: Vec<(String, String, String)>,
    /// Revocations and deletions sent but never answered: they may or may not
    /// have happened, so the keys they touch are not checked as working.
    uncertain_keys: HashSet<String>,
    uncertain_clients: HashSet<String>,
}

impl Ledger {
    /// `Some(true)`: must work; `Some(false)`: must never work; `None`: either.
    fn expectation(&self, key: &str) -> Option<bool> {
        let (client, _, _) = &self.keys[key];
        if self.revoked.contains(key) || self.deleted_clients.contains(client) {
            Some(false)
        } else if self.uncertain_keys.contains(key) || self.uncertain_clients.contains(client) {
            None
        } else {
            Some(true)
        }
    }
}

struct Gate {
    child: Child,
    base: String,
    admin: String,
}

impl Gate {
    /// A GET on the admin API; its JSON.
    async fn admin_get(&self, http: &reqwest::Client, path: &str) -> Value {
        http.get(format!("{}{path}", self.admin))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn spawn(conf: &Path, store: &Path, port: u16, upstream: std::net::SocketAddr) -> Child {
        Command::new(BIN)
            .arg("--config")
            .arg(conf)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--upstream")
            .arg(upstream.to_string())
            .arg("--data")
            .arg(store)
            .env("RUST_LOG", "error")
            .env("TACHI_GATE_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Kills the process and returns what it wrote to stderr.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        err
    }
}

async fn post(
    http: &reqwest::Client,
    url: String,
    cookie: Option<&str>,
    body: Value,
) -> Option<(u16, Value)> {
    let mut req = http.post(url).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.ok()?;
    let st = r.status().as_u16();
    Some((st, r.json().await.ok()?))
}

/// One client's work until the gate dies: exchange codes, use and revoke keys.
async fn worker(base: String, ledger: Arc<Mutex<Ledger>>, seed: u64) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..200 {
        let user = rng.random_range(1..=USERS);
        let client = {
            let l = ledger.lock().unwrap();
            let live: Vec<_> = l
                .clients
                .iter()
                .map(|(c, s)| (c.clone(), s.clone()))
                .collect();
            if live.is_empty() {
                return;
            }
            live[rng.random_range(0..live.len())].clone()
        };
        match rng.random_range(0..10) {
            // Exchange a code for a key.
            0..=5 => {
                let Some((200, v)) = post(
                    &http,
                    format!("{base}/api/v1/oauth/create-code"),
                    Some(&cookie(user)),
                    json!({}),
                )
                .await
                else {
                    return;
                };
                let code = v["body"]["code"].as_str().unwrap_or_default().to_string();
                let body = json!({"client_id": client.0, "client_secret": client.1, "grant_type": "authorization_code", "redirect_uri": CB, "code": code});
                let Some((st, v)) =
                    post(&http, format!("{base}/api/v1/oauth/token"), None, body).await
                else {
                    return;
                };
                if st == 200 {
                    let key = v["body"]["token"].as_str().unwrap_or_default().to_string();
                    // The token ID comes from the user's listing, later.
                    let mut l = ledger.lock().unwrap();
                    l.keys
                        .insert(key.clone(), (client.0.clone(), String::new(), user));
                    l.consumed.push((client.0, code, key));
                }
            }
            // Revoke one of this user's keys by value.
            6..=8 => {
                let victim = {
                    let l = ledger.lock().unwrap();
                    let mine: Vec<_> = l
                        .keys
                        .iter()
                        .filter(|(k, v)| v.2 == user && l.expectation(k) == Some(true))
                        .map(|(k, _)| k.clone())
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    mine[rng.random_range(0..mine.len())].clone()
                };
                ledger.lock().unwrap().uncertain_keys.insert(victim.clone());
                let Ok(r) = http
                    .delete(format!("{base}/api/v1/users/me/api-tokens/{victim}"))
                    .header("cookie", cookie(user))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() == 200 {
                    ledger.lock().unwrap().revoked.insert(victim);
                }
            }
            // Now and then, delete a client (its keys go with it).
            _ => {
                if rng.random_range(0..4) != 0 {
                    continue;
                }
                ledger
                    .lock()
                    .unwrap()
                    .uncertain_clients
                    .insert(client.0.clone());
                let Ok(r) = http
                    .delete(format!("{base}/api/v1/clients/{}", client.0))
                    .header("cookie", cookie(1))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() == 200 {
                    let mut l = ledger.lock().unwrap();
                    l.clients.remove(&client.0);
                    l.deleted_clients.insert(client.0);
                }
            }
        }
    }
}

/// The facts to check, copied out of the ledger.
struct Snapshot {
    /// Keys with a definite expectation: (key, must work).
    keys: Vec<(String, bool)>,
    consumed: Vec<(String, String, String)>,
    deleted: Vec<String>,
    /// Live clients whose deletion was never attempted: (ID, secret).
    live: Vec<(String, String)>,
}

impl Ledger {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            keys: self
                .keys
                .keys()
                .filter_map(|k| Some((k.clone(), self.expectation(k)?)))
                .collect(),
            consumed: self.consumed.clone(),
            deleted: self.deleted_clients.iter().cloned().collect(),
            live: self
                .clients
                .iter()
                .filter(|(c, _)| !self.uncertain_clients.contains(*c))
                .map(|(c, s)| (c.clone(), s.clone()))
                .collect(),
        }
    }
}

/// Checks every acknowledged fact against the restarted gate.
async fn verify(gate: &Gate, ledger: &Mutex<Ledger>, cycle: usize) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let Snapshot {
        keys,
        consumed,
        deleted,
        live,
    } = ledger.lock().unwrap().snapshot();
    for (key, works) in &keys {
        let st = http
            .get(format!("{}/x", gate.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(
            st == 200,
            *works,
            "cycle {cycle}: key expected to {} but got {st}",
            if *works { "work" } else { "be revoked" }
        );
    }
    for id in &deleted {
        let st = http
            .get(format!("{}/api/v1/clients/{id}", gate.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(st, 404, "cycle {cycle}: deleted client {id} is back");
    }
    // A consumed code cannot be exchanged again. Presented again by any
    // authenticated client (these codes are bound to none), it revokes the
    // key it made (RFC 6749 §4.1.2): the ledger records that, so the next
    // cycle checks the key stays revoked across restarts too.
    for (spender, code, key) in &consumed {
        let Some((other, secret)) = live.iter().find(|(c, _)| c != spender) else {
            break;
        };
        let body = json!({"client_id": other, "client_secret": secret, "grant_type": "authorization_code", "redirect_uri": CB, "code": code});
        let (st, v) = post(
            &http,
            format!("{}/api/v1/oauth/token", gate.base),
            None,
            body,
        )
        .await
        .unwrap();
        assert_ne!(st, 200, "cycle {cycle}: consumed code exchanged again: {v}");
        assert_eq!(
            v["description"], "This code has already been used.",
            "cycle {cycle}: a replay must be recognised as one"
        );
        ledger.lock().unwrap().revoked.insert(key.clone());
    }
    // The per-user index and the per-client index list the same keys.
    let mut by_user = HashSet::new();
    for user in 1..=USERS {
        let v: Value = http
            .get(format!("{}/api/v1/users/me/api-tokens", gate.base))
            .header("cookie", cookie(user))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for k in v["body"].as_array().unwrap() {
            assert_eq!(
                k["userID"], user,
                "cycle {cycle}: user index points at another user's key"
            );
            by_user.insert(k["tokenID"].as_str().unwrap().to_string());
        }
    }
    let mut by_client = HashSet::new();
    let clients = gate.admin_get(&http, "/admin/clients").await;
    for c in clients["body"].as_array().unwrap() {
        let id = c["clientID"].as_str().unwrap();
        assert!(
            !deleted.contains(&id.to_string()),
            "cycle {cycle}: deleted client listed"
        );
        let v = gate
            .admin_get(&http, &format!("/admin/keys?client={id}"))
            .await;
        for k in v["body"].as_array().unwrap() {
            assert_eq!(k["fromAPIClient"], id);
            by_client.insert(k["tokenID"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        by_user, by_client,
        "cycle {cycle}: the key indexes disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_sigkill_at_random_moments() {
    let cycles: usize = std::env::var("TACHI_GATE_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("TACHI_GATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash loop: {cycles} cycles, TACHI_GATE_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let upstream = MockTachi::start().await;
    for user in 1..=USERS {
        upstream.add_session(&cookie(user), user);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (port, admin_port) = (free_port(), free_port());
    let conf = dir.path().join("gate.toml");
    std::fs::write(
        &conf,
        format!("[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n[limits]\nenabled = false\n"),
    )
    .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    for cycle in 0..cycles {
        // Sometimes kill it while it starts.
        if rng.random_range(0..3) == 0 {
            let early = Gate {
                child: Gate::spawn(&conf, &store, port, upstream.addr),
                base: String::new(),
                admin: String::new(),
            };
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..80))).await;
            let err = early.kill();
            assert!(
                !err.contains("panicked"),
                "cycle {cycle}: start-up panicked: {err}"
            );
        }
        let gate = Gate {
            child: Gate::spawn(&conf, &store, port, upstream.addr),
            base: format!("http://{addr}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        assert!(
            tokio::task::spawn_blocking(move || wait_for_port(addr, Duration::from_secs(30)))
                .await
                .unwrap(),
            "cycle {cycle}: the gate did not come back"
        );
        let admin_addr = format!("127.0.0.1:{admin_port}").parse().unwrap();
        assert!(tokio::task::spawn_blocking(move || wait_for_port(
            admin_addr,
            Duration::from_secs(10)
        ))
        .await
        .unwrap());
        verify(&gate, &ledger, cycle).await;

        // Keep a few clients alive to work with.
        while ledger.lock().unwrap().clients.len() < 3 {
            let (st, v) = post(&http, format!("{}/api/v1/clients/create", gate.base), Some(&cookie(1)),
                json!({"name": format!("Crash {cycle}"), "redirectUri": CB, "permissions": ["submit_score"]})).await.unwrap();
            assert_eq!(st, 200, "{v}");
            ledger.lock().unwrap().clients.insert(
                v["body"]["clientID"].as_str().unwrap().to_string(),
                v["body"]["clientSecret"].as_str().unwrap().to_string(),
            );
        }

        // Load, then SIGKILL in the middle of it.
        let workers: Vec<_> = (0..6)
            .map(|w| {
                tokio::spawn(worker(
                    gate.base.clone(),
                    ledger.clone(),
                    rng.random::<u64>() ^ w,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        let err = gate.kill();
        assert!(
            !err.contains("panicked"),
            "cycle {cycle}: the gate panicked: {err}"
        );
        for w in workers {
            let _ = w.await;
        }
    }
    // A last restart, checked once more.
    let gate = Gate {
        child: Gate::spawn(&conf, &store, port, upstream.addr),
        base: format!("http://{addr}"),
        admin: format!("http://127.0.0.1:{admin_port}"),
    };
    assert!(
        tokio::task::spawn_blocking(move || wait_for_port(addr, Duration::from_secs(30)))
            .await
            .unwrap()
    );
    let admin_addr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    assert!(tokio::task::spawn_blocking(move || wait_for_port(
        admin_addr,
        Duration::from_secs(10)
    ))
    .await
    .unwrap());
    verify(&gate, &ledger, cycles).await;
    let l = ledger.lock().unwrap();
    assert!(
        l.keys.len() >= cycles,
        "too little work was acknowledged: {} keys",
        l.keys.len()
    );
    eprintln!(
        "crash loop: {} keys issued, {} revoked, {} clients deleted",
        l.keys.len(),
        l.revoked.len(),
        l.deleted_clients.len()
    );
    drop(l);
    gate.kill();
}
