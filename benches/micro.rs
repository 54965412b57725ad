//! Micro-benchmarks of the per-request work: the key check (hash, store
//! lookup, identity headers) at 10³, 10⁵ and 10⁶ stored keys, and from two
//! threads at once; the metrics a forwarded request updates, from one thread
//! and two; the policy match; and parsing a token request body. Run:
//! `cargo bench --bench micro`.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tachi_gate::api::oauth::token::TokenParams;
use tachi_gate::auth::identity::identity_headers;
use tachi_gate::auth::{policy, Identity};
use tachi_gate::config::Config;
use tachi_gate::http::body;
use tachi_gate::store::{digest, KeyRecord, SledStore, Store};

// The allocator of the gate's binary, so that allocation costs as it does there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime the store's async calls run on, as a current-thread one.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// How many different stored keys the store-read benchmark cycles through.
const PROBES: usize = 1000;

/// A store holding `n` keys and keeping `cached` decoded records in memory;
/// returns it with `PROBES` of its keys, spread evenly over the key space.
fn store_with(
    n: usize,
    cached: usize,
    rt: &tokio::runtime::Runtime,
) -> (tempfile::TempDir, SledStore, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with_key_cache(&dir.path().join("store"), cached).unwrap();
    let started = Instant::now();
    let perms = vec!["submit_score".to_string(), "customise_profile".to_string()];
    let mut probes = Vec::new();
    let every = (n / PROBES).max(1);
    for chunk in 0..n.div_ceil(10_000) {
        let batch: Vec<_> = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
            .map(|i| {
                let key = format!("{i:040x}");
                if i % every == 0 && probes.len() < PROBES {
                    probes.push(key.clone());
                }
                (
                    digest(&key),
                    KeyRecord::mint(1 + (i as u64 % 1000), "bench".into(), &perms, None, 0).record,
                )
            })
            .collect();
        rt.block_on(store.import(&[], &batch)).unwrap();
    }
    eprintln!("stored {n} keys in {:?}", started.elapsed());
    (dir, store, probes)
}

/// The key check as a request with a key runs it: hash, look up, identity
/// headers. `key_check/cached` presents one key again and again, as a busy
/// client does (its record is then held in memory); `key_check/store` keeps
/// no records in memory and cycles through keys spread over the whole store,
/// so each check is a sled read and a record decode.
fn key_check(c: &mut Criterion) {
    let rt = runtime();
    // As the gate does it: the record held in memory if it is, else a store read.
    let check = |store: &SledStore, key: &str| {
        let d = digest(black_box(key));
        let record = match store.key_in_memory(&d) {
            Some(held) => held,
            None => rt.block_on(store.key(&d)).unwrap().unwrap(),
        };
        black_box(identity_headers(&Identity::Key(record)).map(<[_]>::len))
    };
    for (group_name, cached) in [("key_check/cached", 65_536), ("key_check/store", 0)] {
        let mut group = c.benchmark_group(group_name);
        for n in [1_000usize, 100_000, 1_000_000] {
            let (_dir, store, probes) = store_with(n, cached, &rt);
            group.bench_with_input(BenchmarkId::from_parameter(n), &probes, |b, probes| {
                let mut next = probes.iter().cycle();
                b.iter(|| {
                    let key = if cached > 0 {
                        &probes[0]
                    } else {
                        next.next().unwrap()
                    };
                    check(&store, key)
                })
            });
        }
        group.finish();
    }
}

fn policy_match(c: &mut Criterion) {
    let config = Config::from_toml_offline(
        "[[auth.policy]]\nmethods = [\"POST\"]\npath_prefix = \"/ir/\"\nrequire = [\"submit_score\"]\n\
         [[auth.policy]]\npath_prefix = \"/api/v1/users/me/settings\"\n\
         [[auth.policy]]\nmethods = [\"DELETE\"]\npath_prefix = \"/api/v1/\"\nrequire = [\"delete_score\"]\n",
    )
    .unwrap();
    let held = vec!["submit_score".to_string()];
    c.bench_function("policy_match", |b| {
        b.iter(|| {
            let p = policy::first_match(
                &config.auth.policies,
                black_box("DELETE"),
                black_box("/api/v1/sessions/abc"),
            );
            black_box(p.map(|p| policy::missing(&p.require, &held)))
        })
    });
}

fn token_bodies(c: &mut Criterion) {
    let json = br#"{"client_id":"CI0123456789abcdef0123456789abcdef01234567","client_secret":"CSfedcba9876543210fedcba9876543210fedcba98","grant_type":"authorization_code","redirect_uri":"https://example.com/callback","code":"0123456789abcdef0123456789abcdef01234567"}"#;
    let form = b"grant_type=authorization_code&code=0123456789abcdef0123456789abcdef01234567&redirect_uri=https%3A%2F%2Fexample.com%2Fcallback&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let mut group = c.benchmark_group("token_body");
    group.bench_function("json", |b| {
        b.iter(|| {
            let (_, map) = body::object(Some("application/json"), black_box(json)).unwrap();
            black_box(TokenParams::from_object(&map).unwrap())
        })
    });
    group.bench_function("form", |b| {
        b.iter(|| {
            let (_, map) =
                body::object(Some("application/x-www-form-urlencoded"), black_box(form)).unwrap();
            black_box(TokenParams::from_object(&map).unwrap())
        })
    });
    group.finish();
}

/// The key check for a key in use from two threads at once, as two workers
/// run it: the same key on both (a busy client) and a key each.
fn key_check_two_threads(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, store, probes) = store_with(1_000, 65_536, &rt);
    let check = |key: &str| {
        let d = digest(black_box(key));
        let record = store.key_in_memory(&d).expect("the key is held in memory");
        black_box(
            identity_headers(&Identity::Key(record))
                .map(<[_]>::len)
                .ok(),
        );
    };
    // A key's first check reads the store and puts its record in memory.
    for key in &probes[..2] {
        rt.block_on(store.key(&digest(key))).unwrap().unwrap();
    }
    let mut group = c.benchmark_group("key_check/two_threads");
    let (one, other) = (probes[0].as_str(), probes[1].as_str());
    for (name, keys) in [("same_key", [one, one]), ("own_keys", [one, other])] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| on_threads(2, iters, |thread| check(keys[thread])))
        });
    }
    group.finish();
}

/// The metrics a forwarded request with a key updates (the key-check and
/// upstream histograms, the request counter), from one thread and from two
/// at once, as two workers update them.
fn request_metrics(c: &mut Criterion) {
    use tachi_gate::telemetry;
    let update = || {
        telemetry::key_checked(black_box(3e-7));
        telemetry::upstream_answered(black_box(2e-4));
        telemetry::request_answered(black_box("gated"), black_box(200));
    };
    let mut group = c.benchmark_group("request_metrics");
    for threads in [1usize, 2] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| on_threads(threads, iters, |_| update()))
        });
    }
    group.finish();
}

/// Runs `work(thread)` `iters` times on each of `threads` threads at once;
/// the time until all are done.
fn on_threads(threads: usize, iters: u64, work: impl Fn(usize) + Sync) -> std::time::Duration {
    let started = Instant::now();
    std::thread::scope(|s| {
        for thread in 0..threads {
            let work = &work;
            s.spawn(move || {
                for _ in 0..iters {
                    work(thread);
                }
            });
        }
    });
    started.elapsed()
}

criterion_group!(
    benches,
    key_check,
    key_check_two_threads,
    request_metrics,
    policy_match,
    token_bodies
);
criterion_main!(benches);
