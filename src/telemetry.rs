//! Metrics (Prometheus, served on the admin listener) and the audit trail.
//!
//! Metrics live in the process-wide default registry and are registered once,
//! however many gates a process starts (the tests start many). Audit lines go
//! to the `audit` log target, one per issuance or revocation; they name keys
//! by token ID and never carry a key, code, secret or cookie.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec,
    register_int_gauge, register_int_gauge_vec, Encoder, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, TextEncoder,
};

/// Fast buckets for in-process work (seconds): 1 µs to 100 ms.
const FAST: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 1e-1,
];

fn counter(name: &str, help: &str) -> IntCounter {
    register_int_counter!(name, help).unwrap_or_else(|_| unreachable_metric())
}

/// Only reached if a metric name were invalid, which the names below are not.
fn unreachable_metric() -> ! {
    panic!("invalid metric definition")
}

macro_rules! lazy {
    ($name:ident: $ty:ty = $init:expr) => {
        pub static $name: LazyLock<$ty> = LazyLock::new(|| $init);
    };
}

lazy!(REQUESTS: IntCounterVec = register_int_counter_vec!(
    "tachi_gate_requests_total",
    "Requests answered, by route class and status.",
    &["class", "status"]
).unwrap_or_else(|_| unreachable_metric()));

// The series of forwarded requests answered 200, looked up once: nearly
// every request counts in it, and a labelled lookup hashes the labels.
lazy!(GATED_OK: IntCounter = REQUESTS.with_label_values(&["gated", "200"]));

/// Counts a request answered with `status` (0: no answer was sent) in its
/// route class.
pub fn request_answered(class: &str, status: u16) {
    match (class, status) {
        ("gated", 200) => with_own_part(|part| part.gated_ok.inc()),
        _ => REQUESTS
            .with_label_values(&[class, status_label(status)])
            .inc(),
    }
}

/// A status as a metric label, without allocating for the common ones.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        0 => "none",
        _ => "other",
    }
}

lazy!(KEY_CHECK: Histogram = register_histogram!(
    "tachi_gate_key_check_seconds",
    "Time to check a Bearer key: hash, store lookup, identity.",
    FAST.to_vec()
).unwrap_or_else(|_| unreachable_metric()));

lazy!(STORE: HistogramVec = register_histogram_vec!(
    "tachi_gate_store_seconds",
    "Store operation latency: reads, and durable commits (flush + fsync).",
    &["op"],
    FAST.to_vec()
).unwrap_or_else(|_| unreachable_metric()));

// The key-read series of STORE, looked up once: it is observed on every
// request that carries a key.
lazy!(STORE_KEY_READ: Histogram = STORE.with_label_values(&["key_read"]));

lazy!(UPSTREAM_ERRORS: IntCounter = counter(
    "tachi_gate_upstream_errors_total",
    "Requests that failed because the upstream was unreachable, slow or broken."
));

lazy!(UPSTREAM_LATENCY: Histogram = register_histogram!(
    "tachi_gate_upstream_seconds",
    "Time from sending a request upstream to its response header."
).unwrap_or_else(|_| unreachable_metric()));

lazy!(CODES_ISSUED: IntCounter = counter("tachi_gate_codes_issued_total", "Intermediate codes created."));
lazy!(KEYS_ISSUED: IntCounter = counter("tachi_gate_keys_issued_total", "API keys issued."));
lazy!(KEYS_REVOKED: IntCounter = counter("tachi_gate_keys_revoked_total", "API keys revoked."));

lazy!(HEADER_TIMEOUTS: IntCounter = counter(
    "tachi_gate_header_timeouts_total",
    "Connections answered 408 and closed because a request header arrived too slowly."
));

// The PostgreSQL store's connections and revocation notices (absent with sled).
lazy!(STORE_POOL: IntGaugeVec = register_int_gauge_vec!(
    "tachi_gate_store_pool_connections",
    "PostgreSQL pool connections: idle, in_use, max, and waiting (requests queued for one).",
    &["state"]
).unwrap_or_else(|_| unreachable_metric()));

lazy!(STORE_NOTIFICATIONS: IntCounter = counter(
    "tachi_gate_store_notifications_total",
    "Key revocation notices received from the database (from any gate, this one included)."
));

lazy!(STORE_LISTENING: IntGauge = register_int_gauge!(
    "tachi_gate_store_listening",
    "1 while the connection that receives key revocation notices is up."
).unwrap_or_else(|_| unreachable_metric()));

lazy!(STORE_LISTENER_RECONNECTS: IntCounter = counter(
    "tachi_gate_store_listener_reconnects_total",
    "Times the revocation listener lost its connection (every held key was then forgotten)."
));

lazy!(STORE_UNAVAILABLE: IntCounter = counter(
    "tachi_gate_store_unavailable_total",
    "Store operations refused because the database was unreachable or too slow."
));

lazy!(HEADS_REFUSED: IntCounter = counter(
    "tachi_gate_heads_refused_total",
    "Connections answered 400 or 431 and closed because Pingora's parser refuses their request head."
));

lazy!(RATE_LIMITED: IntCounterVec = register_int_counter_vec!(
    "tachi_gate_rate_limited_total",
    "Requests refused with 429, by limit.",
    &["limit"]
).unwrap_or_else(|_| unreachable_metric()));

/// Records how long a key check took.
pub fn key_checked(seconds: f64) {
    with_own_part(|part| part.key_check.observe(seconds));
}

/// Records how long the upstream took to send a response header.
pub fn upstream_answered(seconds: f64) {
    with_own_part(|part| part.upstream.observe(seconds));
}

/// How many parts the per-request metrics are kept in: more than the
/// threads that update them, so that each worker has its own.
const PARTS: usize = 16;

/// The metrics nearly every forwarded request updates, kept in parts that
/// are added into the registered metrics when they are read ([`render`]).
///
/// A Prometheus histogram is a few atomics that every update changes, so
/// with two workers each update found the cache line on the other core and
/// cost several times what it did on one thread (`cargo bench --bench
/// micro`, recorded in benches/README.md). Each thread now updates a part of its own, behind a lock that
/// only [`render`] ever contends, and reading the metrics loses nothing.
struct Part {
    key_check: LocalHistogram,
    upstream: LocalHistogram,
    gated_ok: LocalIntCounter,
}

/// A part on a cache line (128 bytes, as adjacent lines are fetched in
/// pairs) of its own.
#[repr(align(128))]
struct Padded(Mutex<Part>);

static PARTS_OF: LazyLock<Vec<Padded>> = LazyLock::new(|| {
    (0..PARTS)
        .map(|_| {
            Padded(Mutex::new(Part {
                key_check: KEY_CHECK.local(),
                upstream: UPSTREAM_LATENCY.local(),
                gated_ok: GATED_OK.local(),
            }))
        })
        .collect()
});

/// Runs `update` on the calling thread's part. Threads take parts in turn
/// as they first update one.
fn with_own_part(update: impl FnOnce(&Part)) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static OWN: usize = NEXT.fetch_add(1, Ordering::Relaxed) % PARTS;
    }
    let part = &PARTS_OF[OWN.with(|own| *own)].0;
    // An update cannot panic, so a poisoned lock still holds sound counts.
    update(&part.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Adds every part's updates into the registered metrics.
fn gather_parts() {
    for part in PARTS_OF.iter() {
        let part = part.0.lock().unwrap_or_else(PoisonError::into_inner);
        part.key_check.flush();
        part.upstream.flush();
        part.gated_ok.flush();
    }
}

/// The metrics in Prometheus's text format.
pub fn render() -> Vec<u8> {
    gather_parts();
    let mut out = Vec::new();
    // Encoding gathered families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut out);
    out
}

/// Records a connection cut off because its request header was too slow.
pub fn header_timeout() {
    HEADER_TIMEOUTS.inc();
    // Debug only: under a slowloris attack this happens thousands of times,
    // and the counter already tells the operator.
    log::debug!("a request header was not received in time; answered 408 and closed");
}

/// Records a request head refused before any route saw it (malformed or
/// too long): such requests have no route class, so they are counted apart.
pub fn head_refused() {
    HEADS_REFUSED.inc();
    // Debug only, like header timeouts: a flood would fill the log.
    log::debug!("a request head was refused; answered and closed");
}

/// Records a new code.
pub fn code_issued(user: u64, client: Option<&str>) {
    CODES_ISSUED.inc();
    log::info!(target: "audit", "code issued user={user} client={}", client.unwrap_or("-"));
}

/// What the audit line of a new key says of it: never the key itself.
pub struct IssuedKey<'a> {
    pub token_id: &'a str,
    pub user: u64,
    pub client: Option<&'a str>,
    pub permissions: &'a [String],
}

/// Records a new key; `via` says which route or command made it.
pub fn key_issued(key: IssuedKey<'_>, via: &str) {
    KEYS_ISSUED.inc();
    log::info!(
        target: "audit",
        "key issued token_id={} user={} client={} permissions={} via={via}",
        key.token_id,
        key.user,
        key.client.unwrap_or("-"),
        key.permissions.join(",")
    );
}

/// Records revoked keys; `what` names them (a token ID, a user, a client).
pub fn keys_revoked(count: usize, what: &str, why: &str) {
    KEYS_REVOKED.inc_by(count as u64);
    log::info!(target: "audit", "keys revoked count={count} {what} reason={why}");
}

/// Records a change to a client.
pub fn client_event(event: &str, client: &str, detail: &str) {
    log::info!(target: "audit", "client {event} client={client} {detail}");
}

#[cfg(test)]
mod tests {
    use super::{key_checked, render, request_answered, upstream_answered, PARTS};

    /// The value of the sample `name` in the rendered metrics.
    fn sample(name: &str) -> f64 {
        let text = String::from_utf8(render()).unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.parse().unwrap())
    }

    #[test]
    fn every_threads_updates_are_read() {
        let names = [
            "tachi_gate_key_check_seconds_count",
            "tachi_gate_upstream_seconds_count",
            "tachi_gate_requests_total{class=\"gated\",status=\"200\"}",
        ];
        let before = names.map(sample);
        // More threads than parts, so that some share one.
        let threads = PARTS + 3;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..10 {
                        key_checked(1e-6);
                        upstream_answered(1e-3);
                        request_answered("gated", 200);
                    }
                });
            }
        });
        // Other tests in this process may count too: at least these are there.
        for (name, before) in names.iter().zip(before) {
            assert!(
                sample(name) >= before + (threads * 10) as f64,
                "{name}: {before} then {}",
                sample(name)
            );
        }
    }
}
