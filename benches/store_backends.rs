//! sled beside PostgreSQL, through the `Store` trait as the routes use it:
//! durable exchanges a second at 1, 8 and 32 concurrent clients, the key
//! check (held in memory, and first read), and for PostgreSQL how long a
//! revocation takes to reach another gate's memory (p50, p99).
//!
//! `cargo bench --bench store_backends` (add `--profile dev` for a quick
//! run). The database is `TACHI_GATE_TEST_POSTGRES_URL` (default: the local
//! test server); the bench works in a schema of its own and drops it.
//! Results and the machine are recorded in benches/README.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tachi_gate::config::PostgresConfig;
use tachi_gate::store::{
    digest, random_hex, ClientRecord, CodeRecord, KeyRecord, PgStore, SledStore, Store,
};

const SECONDS_PER_RUN: Duration = Duration::from_secs(3);

fn client() -> ClientRecord {
    ClientRecord {
        client_id: "CIbench".into(),
        secret_hash: String::new(),
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

fn key_record() -> KeyRecord {
    KeyRecord {
        token_id: random_hex(12),
        user_id: 1,
        identifier: "Bench".into(),
        permissions: vec!["submit_score".into()],
        from_client: Some("CIbench".into()),
        created_on: 0,
        memo: Default::default(),
    }
}

fn code(user: u64) -> CodeRecord {
    CodeRecord {
        user_id: user,
        created_on: 0,
        expires_at: u64::MAX,
        client_id: None,
        challenge: None,
        redeemed: None,
        authorization: None,
    }
}

/// Exchanges a second with `clients` exchanging at once, each code stored
/// first (not timed) as create-code would.
async fn exchanges_per_second(store: Arc<dyn Store>, clients: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                let mut busy = Duration::ZERO;
                while started.elapsed() < SECONDS_PER_RUN {
                    let secret = random_hex(20);
                    let c_digest = digest(&secret);
                    store
                        .insert_code(&c_digest, &code(100 + c as u64), usize::MAX)
                        .await
                        .unwrap();
                    let t = Instant::now();
                    store
                        .redeem_code(&c_digest, &digest(&random_hex(20)), &key_record(), 1)
                        .await
                        .unwrap();
                    busy += t.elapsed();
                    done += 1;
                }
                (done, busy)
            })
        })
        .collect();
    let mut total = 0.0;
    for t in tasks {
        let (done, busy) = t.await.unwrap();
        // Each client's rate over the time it spent exchanging.
        total += done as f64 / busy.as_secs_f64();
    }
    total
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// (held in memory, first read) in µs, medians.
async fn key_checks(store: Arc<dyn Store>) -> (f64, f64) {
    let mut first = Vec::new();
    let mut held = Vec::new();
    for _ in 0..200 {
        let k = digest(&random_hex(20));
        store.insert_key(&k, &key_record()).await.unwrap();
        let t = Instant::now();
        assert!(store.key(&k).await.unwrap().is_some());
        first.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        for _ in 0..1000 {
            assert!(store.key_in_memory(&k).is_some());
        }
        held.push(t.elapsed().as_secs_f64() * 1e6 / 1000.0);
    }
    (median(held), median(first))
}

async fn run(name: &str, store: Arc<dyn Store>) {
    store.insert_client(&client(), 10).await.unwrap();
    for clients in [1, 8, 32] {
        let rate = exchanges_per_second(store.clone(), clients).await;
        println!("{name}: durable exchanges/s at {clients:>2} clients: {rate:>8.0}");
    }
    let (held, first) = key_checks(store.clone()).await;
    println!("{name}: key check held in memory: {held:.3} µs; first read: {first:.1} µs");
}

fn admin(sql: String) {
    let url = server_url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(&sql).await.unwrap();
        });
    })
    .join()
    .unwrap();
}

fn server_url() -> String {
    std::env::var("TACHI_GATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    rt.block_on(run("sled", sled.clone()));
    sled.close().unwrap();

    let schema = format!("tg_bench_{}", random_hex(4));
    admin(format!("CREATE SCHEMA {schema}"));
    let base = server_url();
    let joiner = if base.contains('?') { '&' } else { '?' };
    let config = PostgresConfig {
        url: format!("{base}{joiner}options=-c%20search_path%3D{schema}"),
        pool_size: 32,
        timeout: Duration::from_secs(10),
    };
    let pg: Arc<dyn Store> = Arc::new(PgStore::open(&config).unwrap());
    let other = PgStore::open(&config).unwrap();
    rt.block_on(async {
        run("postgres", pg.clone()).await;
        // Propagation: a key held by the other gate, revoked through this one,
        // until the other no longer holds it.
        let mut took = Vec::new();
        for _ in 0..200 {
            let k = digest(&random_hex(20));
            pg.insert_key(&k, &key_record()).await.unwrap();
            other.key(&k).await.unwrap();
            let t = Instant::now();
            pg.revoke_key(&k).await.unwrap();
            let answered = t.elapsed();
            while other.key_in_memory(&k).is_some() {
                tokio::task::yield_now().await;
            }
            // From the revocation's answer, as a client of both would see it.
            took.push(t.elapsed().saturating_sub(answered).as_secs_f64() * 1e3);
        }
        took.sort_by(|a, b| a.total_cmp(b));
        println!(
            "postgres: revocation heard by another gate after its answer: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&took, 0.5),
            percentile(&took, 0.99)
        );
    });
    pg.close().unwrap();
    other.close().unwrap();
    admin(format!("DROP SCHEMA {schema} CASCADE"));
}
