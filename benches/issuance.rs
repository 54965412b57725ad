//! Durable issuance: how many code exchanges per second the store commits
//! with 1, 8 and 32 concurrent exchanges, every one on disk before it
//! returns, beside this machine's serial fsync rate measured in the same run.
//! Run: `cargo bench --bench issuance`.
//!
//! First it measures the store's part of a token exchange (the atomic spend
//! of the code plus the new key, and the flush + fsync before the answer),
//! the part that costs disk time.
//!
//! Then it measures the same exchanges end to end: the gate's release binary
//! on a store holding the client and the codes, and 1, 8 and 32 HTTP
//! clients (reqwest, in this process) each POSTing `/api/v1/oauth/token` in
//! turn, every answer checked to be a 200 with a key. Clients and gate share
//! this machine's cores, so it also reports each one's CPU time per
//! exchange.
//!
//! Beside the 32-client HTTP run, it measures a ceiling: the same requests
//! for codes the store does not hold, each answered 404 once the code's
//! lookup finds nothing (the body parsed, the client read and its secret
//! checked, the code looked up; no code record decoded or checked, no key
//! minted, nothing written). No exchange through HTTP can run faster on
//! this machine, whatever the disk.
//!
//! Last, it measures a floor: the five writes an exchange makes, straight
//! into sled as plain inserts, with no transaction, no reads and no flush.
//! The store's exchange writer does all of that work and more (it reads the
//! code and the client, and makes the writes one transaction), and sled runs
//! transactions one at a time, so issuance stays below the floor whatever
//! the disk.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tachi_gate::store::{
    digest, key_index_entries, now_ms, ClientRecord, CodeRecord, KeyRecord, Redemption, SledStore,
    Store,
};

#[path = "../tests/it/support/binary.rs"]
mod binary;
#[path = "../tests/it/support/ports.rs"]
mod ports;

// The allocator of the gate's binary, so that the store runs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serial write + fsync of a small record, as often as possible for `for_`.
fn serial_fsync_rate(dir: &std::path::Path, for_: Duration) -> f64 {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_ {
        f.write_all(b"0123456789abcdef0123456789abcdef").unwrap();
        f.sync_all().unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn client() -> ClientRecord {
    ClientRecord {
        client_id: "CIbench".into(),
        secret_hash: hex::encode(digest("secret")),
        name: "Bench".into(),
        author: 1,
        requested_permissions: vec!["submit_score".into()],
        redirect_uri: None,
        webhook_uri: None,
        api_key_template: None,
        api_key_filename: None,
        created_on: 0,
        public: false,
    }
}

/// A code of user 1 for any client, that never expires.
fn bench_code() -> CodeRecord {
    CodeRecord {
        user_id: 1,
        created_on: 0,
        expires_at: u64::MAX,
        client_id: None,
        challenge: None,
        redeemed: None,
        authorization: None,
    }
}

/// A store at `path` holding the bench's client and `total` codes,
/// `code-0` onwards (made concurrently, so that setting up is quick too).
async fn store_with_codes(path: &Path, total: usize) -> Arc<SledStore> {
    let store = Arc::new(SledStore::open(path).unwrap());
    store.insert_client(&client(), 10).await.unwrap();
    let mut setup = tokio::task::JoinSet::new();
    for i in 0..total {
        let store = store.clone();
        setup.spawn(async move {
            store
                .insert_code(&digest(&format!("code-{i}")), &bench_code(), usize::MAX)
                .await
                .unwrap();
        });
    }
    while setup.join_next().await.is_some() {}
    store
}

/// Exchanges per second, and how many exchanges shared each flush.
async fn exchanges_per_second(concurrency: usize, per_task: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let total = concurrency * per_task;
    let store = store_with_codes(&dir.path().join("store"), total).await;

    let flushes_before = store.flush_count();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let store = store.clone();
        tasks.spawn(async move {
            for j in 0..per_task {
                let code = digest(&format!("code-{}", t * per_task + j));
                let minted =
                    KeyRecord::mint_for_client(1, &client(), "Bench Token".into(), now_ms());
                store
                    .redeem_code(&code, &minted.digest, &minted.record, now_ms())
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let flushes = (store.flush_count() - flushes_before).max(1);
    (rate, total as f64 / flushes as f64)
}

/// CPU time (user and system) that process `pid` ("self" for this one)
/// has used so far, from `/proc`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may
    // hold spaces; user and system time are the 12th and 13th of them.
    let ticks: u64 = stat.rsplit_once(") ").map_or(0, |(_, rest)| {
        rest.split(' ')
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    });
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// An end-to-end run: exchanges per second, and the CPU time per exchange
/// of the gate and of the clients.
struct HttpRun {
    rate: f64,
    gate_cpu: Duration,
    clients_cpu: Duration,
}

/// Which codes the HTTP clients present.
#[derive(Clone, Copy)]
enum Codes {
    /// The store's codes: each request is a real exchange, answered 200.
    Held,
    /// Codes the store does not hold: each request does all an exchange
    /// does up to the code's lookup, and is answered 404.
    Absent,
}

/// Exchanges through the gate's HTTP API: `concurrency` clients, each
/// sending `per_task` token requests one after another (on its own
/// kept-alive connection), every answer checked.
fn http_exchanges(
    rt: &tokio::runtime::Runtime,
    concurrency: usize,
    per_task: usize,
    codes: Codes,
) -> HttpRun {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let total = concurrency * per_task;
    rt.block_on(async {
        store_with_codes(&path, total).await.close().unwrap();
    });
    // No rate limits (every request comes from one address), no admin
    // listener, no access log; the upstream is never asked.
    let config = dir.path().join("gate.toml");
    std::fs::write(
        &config,
        "[server]\nadmin_listen = \"\"\n[limits]\nenabled = false\n[log]\nlevel = \"error\"\n",
    )
    .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], ports::free_port()));
    let gate = binary::spawn_gate_binary(addr, &path, &["--config".as_ref(), config.as_ref()]);
    assert!(
        ports::wait_for_port(addr, Duration::from_secs(60)),
        "the gate did not start"
    );
    let url = format!("http://{addr}/api/v1/oauth/token");
    let client_id = client().client_id;
    let gate_pid = gate.id().to_string();
    let cpu_before = (cpu_time(&gate_pid), cpu_time("self"));
    let elapsed = rt.block_on(async {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..concurrency {
            // A client of its own per task: one connection each, kept alive.
            let http = reqwest::Client::new();
            let (url, client_id) = (url.clone(), client_id.clone());
            tasks.spawn(async move {
                let prefix = match codes {
                    Codes::Held => "code",
                    Codes::Absent => "absent",
                };
                for j in 0..per_task {
                    let body = serde_json::json!({
                        "client_id": client_id,
                        "client_secret": "secret",
                        "grant_type": "authorization_code",
                        "code": format!("{prefix}-{}", t * per_task + j),
                    });
                    let resp = http.post(&url).json(&body).send().await.unwrap();
                    let status = resp.status();
                    let answer: serde_json::Value = resp.json().await.unwrap();
                    let as_expected = match codes {
                        Codes::Held => status == 200 && answer["body"]["token"].is_string(),
                        Codes::Absent => status == 404 && answer["success"] == false,
                    };
                    assert!(as_expected, "{status} {answer}");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        started.elapsed()
    });
    let gate_cpu = cpu_time(&gate_pid).saturating_sub(cpu_before.0);
    let clients_cpu = cpu_time("self").saturating_sub(cpu_before.1);
    drop(gate);
    HttpRun {
        rate: total as f64 / elapsed.as_secs_f64(),
        gate_cpu: gate_cpu / total as u32,
        clients_cpu: clients_cpu / total as u32,
    }
}

/// The floor: exchanges per second when each is only its five sled writes
/// (the spent code, the key, and its three index entries, with the record
/// shapes and encodings the store uses), `total` of them into a fresh
/// database holding `total` codes. Plain inserts: no transaction, and none
/// of the log sealing that a transaction or a batch adds once per commit.
fn sled_writes_per_second(total: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 * 1024 * 1024)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let tree = |name: &str| db.open_tree(name).unwrap();
    let (codes, keys, key_ids) = (tree("codes"), tree("keys"), tree("key_ids"));
    let (by_client, by_user) = (tree("keys_by_client"), tree("keys_by_user"));
    let mut code = bench_code();
    let code_digests: Vec<_> = (0..total).map(|i| digest(&format!("code-{i}"))).collect();
    for d in &code_digests {
        codes.insert(d, serde_json::to_vec(&code).unwrap()).unwrap();
    }
    let client = client();
    // Keys are minted by the requests, not by the writer: not timed.
    let minted: Vec<_> = (0..total)
        .map(|_| KeyRecord::mint_for_client(1, &client, "Bench Token".into(), now_ms()))
        .collect();
    // The codes are on disk before timing starts, as in the main bench.
    db.flush().unwrap();
    let started = Instant::now();
    for (d, minted) in code_digests.iter().zip(&minted) {
        code.redeemed = Some(Redemption {
            key_hash: hex::encode(minted.digest),
            client_id: client.client_id.clone(),
            at: now_ms(),
        });
        let key = &minted.digest[..];
        codes.insert(d, serde_json::to_vec(&code).unwrap()).unwrap();
        keys.insert(key, serde_json::to_vec(&minted.record).unwrap())
            .unwrap();
        key_ids
            .insert(minted.record.token_id.as_bytes(), key)
            .unwrap();
        let (client_entry, user_entry) = key_index_entries(key, &minted.record);
        if let Some(entry) = client_entry {
            by_client.insert(entry, &[][..]).unwrap();
        }
        by_user.insert(user_entry, &[][..]).unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fsync = serial_fsync_rate(dir.path(), Duration::from_secs(3));
    println!("serial fsync rate: {fsync:.0}/s");
    println!(
        "{:>12} {:>16} {:>14} {:>20}",
        "concurrency", "exchanges/s", "× fsync rate", "exchanges per flush"
    );
    for (concurrency, per_task) in [(1, 1000), (8, 500), (32, 250)] {
        // The median of three runs, by rate.
        let mut runs: Vec<(f64, f64)> = (0..3)
            .map(|_| rt.block_on(exchanges_per_second(concurrency, per_task)))
            .collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rate, per_flush) = runs[1];
        println!(
            "{concurrency:>12} {rate:>16.0} {:>14.2} {per_flush:>20.1}",
            rate / fsync
        );
    }
    println!("through HTTP (the gate's binary; clients in this process):");
    println!(
        "{:>12} {:>16} {:>14} {:>22} {:>22}",
        "concurrency",
        "exchanges/s",
        "× fsync rate",
        "gate CPU µs/exchange",
        "client CPU µs/exchange"
    );
    let http_row = |label: &str, concurrency: usize, per_task: usize, codes: Codes| {
        // The median of three runs, by rate.
        let mut runs: Vec<HttpRun> = (0..3)
            .map(|_| http_exchanges(&rt, concurrency, per_task, codes))
            .collect();
        runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        let run = &runs[1];
        println!(
            "{label:>12} {:>16.0} {:>14.2} {:>22.1} {:>22.1}",
            run.rate,
            run.rate / fsync,
            run.gate_cpu.as_secs_f64() * 1e6,
            run.clients_cpu.as_secs_f64() * 1e6
        );
    };
    for (concurrency, per_task) in [(1, 1000), (8, 500), (32, 250)] {
        http_row(&concurrency.to_string(), concurrency, per_task, Codes::Held);
    }
    println!("ceiling through HTTP, 32 clients presenting codes the store does not hold (404s; the columns count requests):");
    http_row("32", 32, 250, Codes::Absent);
    // The same median of three, at the largest run's size.
    let mut floor: Vec<f64> = (0..3).map(|_| sled_writes_per_second(32 * 250)).collect();
    floor.sort_by(f64::total_cmp);
    println!(
        "floor, an exchange's five sled writes alone (no transaction, checks or flush): {:.0}/s ({:.2} × fsync rate)",
        floor[1],
        floor[1] / fsync
    );
}
