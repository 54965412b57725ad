//! Durable issuance: how many code exchanges per second the store commits
//! with 1, 8 and 32 concurrent exchanges, every one on disk before it
//! returns, beside this machine's serial fsync rate measured in the same run.
//! Run: `cargo bench --bench issuance`.
//!
//! This measures the store's part of a token exchange (the atomic spend of
//! the code plus the new key, and the flush + fsync before the answer), which
//! is the part that costs disk time; HTTP and JSON add the same few
//! microseconds at any concurrency.
//!
//! Last, it measures a floor: the five writes an exchange makes, straight
//! into sled as plain inserts, with no transaction, no reads and no flush.
//! The store's exchange writer does all of that work and more (it reads the
//! code and the client, and makes the writes one transaction), and sled runs
//! transactions one at a time, so issuance stays below the floor whatever
//! the disk.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tachi_gate::store::{
    digest, key_index_entries, now_ms, ClientRecord, CodeRecord, KeyRecord, Redemption, SledStore,
    Store,
};

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
    }
}

/// Exchanges per second, and how many exchanges shared each flush.
async fn exchanges_per_second(concurrency: usize, per_task: usize) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("store")).unwrap());
    store.insert_client(&client(), 10).await.unwrap();
    // Codes, made concurrently so that setting up is quick too.
    let total = concurrency * per_task;
    let mut setup = tokio::task::JoinSet::new();
    for i in 0..total {
        let store = store.clone();
        setup.spawn(async move {
            store
                .insert_code(&digest(&format!("code-{i}")), &bench_code())
                .await
                .unwrap();
        });
    }
    while setup.join_next().await.is_some() {}

    let flushes_before = store.flush_count();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let store = store.clone();
        tasks.spawn(async move {
            for j in 0..per_task {
                let code = digest(&format!("code-{}", t * per_task + j));
                let minted = KeyRecord::mint_for_client(1, &client(), now_ms());
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
        .map(|_| KeyRecord::mint_for_client(1, &client, now_ms()))
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
    // The same median of three, at the largest run's size.
    let mut floor: Vec<f64> = (0..3).map(|_| sled_writes_per_second(32 * 250)).collect();
    floor.sort_by(f64::total_cmp);
    println!(
        "floor, an exchange's five sled writes alone (no transaction, checks or flush): {:.0}/s ({:.2} × fsync rate)",
        floor[1],
        floor[1] / fsync
    );
}
