//! Revocations from other gates: every transaction that removes keys sends
//! their digests with `pg_notify`, delivered only if it commits; each gate
//! listens on one connection of its own and drops those records from its
//! key cache.
//!
//! A notification sent while a gate was not listening is lost, so whenever
//! the listening connection is (re)established the gate forgets every
//! record it holds: a key revoked meanwhile is then read again, and found
//! gone. While not listening, the gate keeps no new record (see
//! `PgStore::key`), and what it already holds is judged by
//! [`while_deaf`]: if the database answers the pool, other gates may be
//! revoking keys this one cannot hear of, so every record goes at once;
//! only while the database does not answer this gate either are held
//! records still served, and then for at most [`HELD_FOR_TIMEOUTS`] times
//! the store's timeout, since other gates may still reach it by another
//! path. The gate tries again every second at most, and pings the database
//! every second, so a dead connection is noticed within the store's
//! timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::key_cache::KeyCache;
use crate::store::Digest;
use crate::telemetry;

/// Digests per notification: 65 bytes each keeps a payload well under
/// PostgreSQL's 8000-byte limit.
const DIGESTS_PER_NOTIFICATION: usize = 100;

/// How often the listening connection is checked with a query.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// How long, in store timeouts, records held when the listener went down
/// keep answering while the database cannot be reached (a minute at the
/// default 2 s): long enough to ride out a restart or a failover of the
/// database, short enough that a key revoked through another gate that
/// still reaches it is refused here soon after.
pub(super) const HELD_FOR_TIMEOUTS: u32 = 30;

/// What the store and its listener share.
pub(super) struct Shared {
    pub(super) key_cache: KeyCache,
    /// Whether the listening connection is up: notifications are arriving.
    pub(super) listening: AtomicBool,
    /// Whether the database answered the last ping or connection attempt.
    pub(super) reachable: AtomicBool,
}

/// The payloads announcing that `removed` are gone: comma-separated hex
/// digests, as many notifications as needed.
pub(super) fn payloads(removed: &[Digest]) -> Vec<String> {
    removed
        .chunks(DIGESTS_PER_NOTIFICATION)
        .map(|chunk| chunk.iter().map(hex::encode).collect::<Vec<_>>().join(","))
        .collect()
}

/// The digests a payload names; `None` when any part is not a digest (the
/// listener then forgets every record rather than guess).
pub(super) fn parse_payload(payload: &str) -> Option<Vec<Digest>> {
    payload
        .split(',')
        .map(crate::store::digest_from_hex)
        .collect()
}

/// What becomes of the records held while the gate is not listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Still served: the database answers no one here, and the outage is young.
    Keep,
    /// Forgotten: revocations may be committed that this gate cannot hear of.
    Forget,
}

/// Judges the held records when the listener has been down for `deaf_for`
/// and the database `answers` the pool (or not).
pub(super) fn while_deaf(answers: bool, deaf_for: Duration, timeout: Duration) -> Held {
    if answers || deaf_for >= timeout.saturating_mul(HELD_FOR_TIMEOUTS) {
        Held::Forget
    } else {
        Held::Keep
    }
}

/// Applies the notices already received on a connection being given up:
/// each is a committed revocation, which would otherwise be lost and leave
/// its keys answering here until the listener is back.
fn drain(cache: &KeyCache, notices: &mut mpsc::UnboundedReceiver<String>) {
    while let Ok(payload) = notices.try_recv() {
        apply(cache, &payload);
    }
}

/// Whether the database answers a pooled connection within the timeout.
async fn database_answers(target: &Target) -> bool {
    let probe = async {
        let client = target.pool.get().await.ok()?;
        client.simple_query("").await.ok()
    };
    matches!(
        tokio::time::timeout(target.timeout, probe).await,
        Ok(Some(_))
    )
}

/// Drops what one notification names.
fn apply(cache: &KeyCache, payload: &str) {
    telemetry::STORE_NOTIFICATIONS.inc();
    match parse_payload(payload) {
        Some(digests) => cache.forget(&digests),
        None => {
            log::warn!("a key revocation notice could not be read; forgetting every held key");
            cache.forget_all();
        }
    }
}

/// What the listener needs to connect.
pub(super) struct Target {
    pub(super) pg: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
    pub(super) channel: String,
    pub(super) timeout: Duration,
    pub(super) pool: deadpool_postgres::Pool,
}

/// Listens until `stop` turns true, reconnecting whenever the connection is lost.
pub(super) async fn run(shared: Arc<Shared>, target: Target, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(50);
    let mut deaf_since = Instant::now();
    // What was last logged about the held records, so it is said once.
    let mut told = Held::Keep;
    loop {
        let Err(e) = listen(&shared, &target, &mut stop).await else {
            return;
        };
        shared.reachable.store(false, Ordering::SeqCst);
        if shared.listening.swap(false, Ordering::SeqCst) {
            telemetry::STORE_LISTENING.set(0);
            telemetry::STORE_LISTENER_RECONNECTS.inc();
            backoff = Duration::from_millis(50);
            deaf_since = Instant::now();
            told = Held::Keep;
            log::error!(
                "store: stopped hearing key revocations ({e}); keys held in memory are \
                 checked only while the database answers no one here, for at most {} s",
                target.timeout.saturating_mul(HELD_FOR_TIMEOUTS).as_secs()
            );
        } else {
            log::debug!("store: cannot listen yet: {e}");
        }
        let answers = tokio::select! {
            a = database_answers(&target) => a,
            _ = stopped(&mut stop) => return,
        };
        shared.reachable.store(answers, Ordering::SeqCst);
        let held = while_deaf(answers, deaf_since.elapsed(), target.timeout);
        if held == Held::Forget {
            shared.key_cache.forget_all();
            if told == Held::Keep {
                log::warn!(
                    "store: not listening for key revocations; every key is read from the \
                     database {}",
                    if answers {
                        "on each use until listening again"
                    } else {
                        "once it is back (held keys were kept as long as allowed)"
                    }
                );
            }
        }
        told = held;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One listening connection, from connecting to its loss (an error) or to
/// `stop` (`Ok`).
async fn listen(
    shared: &Shared,
    target: &Target,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let connecting = tokio::time::timeout(target.timeout, target.pg.connect(target.tls.clone()));
    let connected = tokio::select! {
        c = connecting => c.map_err(|_| "no connection within the timeout".to_string())?,
        _ = stopped(stop) => return Ok(()),
    };
    let (client, mut connection) = connected.map_err(|e| super::describe(&e))?;
    let (tx, mut notices) = mpsc::unbounded_channel();
    // The connection delivers notifications only while it is polled.
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    log::warn!("store: the listening connection failed: {e}");
                    return;
                }
            }
        }
    });
    let listening = async {
        let statement = format!("LISTEN {}", quote_identifier(&target.channel));
        tokio::time::timeout(target.timeout, client.batch_execute(&statement))
            .await
            .map_err(|_| "LISTEN timed out".to_string())?
            .map_err(|e| super::describe(&e))?;
        // Listening from here on: whatever was revoked before is in the
        // database, and every record held may predate it.
        shared.key_cache.forget_all();
        shared.listening.store(true, Ordering::SeqCst);
        shared.reachable.store(true, Ordering::SeqCst);
        telemetry::STORE_LISTENING.set(1);
        log::info!("store: listening for key revocations");
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                notice = notices.recv() => match notice {
                    Some(payload) => apply(&shared.key_cache, &payload),
                    None => return Err("the listening connection closed".to_string()),
                },
                _ = ping.tick() => {
                    publish_pool(&target.pool);
                    let lost = match tokio::time::timeout(target.timeout, client.simple_query("")).await {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(super::describe(&e)),
                        Err(_) => Some("the database stopped answering".to_string()),
                    };
                    match lost {
                        None => shared.reachable.store(true, Ordering::SeqCst),
                        Some(why) => {
                            drain(&shared.key_cache, &mut notices);
                            return Err(why);
                        }
                    }
                }
                _ = stopped(stop) => return Ok(()),
            }
        }
    };
    let outcome = listening.await;
    driver.abort();
    outcome
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sets the pool gauges.
fn publish_pool(pool: &deadpool_postgres::Pool) {
    let status = pool.status();
    telemetry::STORE_POOL
        .with_label_values(&["idle"])
        .set(status.available as i64);
    telemetry::STORE_POOL
        .with_label_values(&["in_use"])
        .set(status.size.saturating_sub(status.available) as i64);
    telemetry::STORE_POOL
        .with_label_values(&["max"])
        .set(status.max_size as i64);
    telemetry::STORE_POOL
        .with_label_values(&["waiting"])
        .set(status.waiting as i64);
}

/// A channel name as an SQL identifier (`LISTEN` takes no parameter).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_every_digest_within_the_size_limit() {
        let digests: Vec<Digest> = (0..250u32)
            .map(|i| crate::store::digest(&i.to_string()))
            .collect();
        let sent = payloads(&digests);
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|p| p.len() < 8000));
        let back: Vec<Digest> = sent
            .iter()
            .flat_map(|p| parse_payload(p).unwrap())
            .collect();
        assert_eq!(back, digests);
        assert!(payloads(&[]).is_empty());
    }

    #[test]
    fn an_unreadable_payload_names_nothing() {
        assert!(parse_payload("").is_none());
        assert!(parse_payload("abc").is_none());
        let one = hex::encode([7u8; 32]);
        assert!(parse_payload(&format!("{one},zz")).is_none());
        assert_eq!(parse_payload(&one), Some(vec![[7u8; 32]]));
    }

    #[test]
    fn an_unreadable_notice_forgets_every_record() {
        let cache = KeyCache::new(10);
        let record = Arc::new(crate::store::KeyRecord::sample());
        cache.fill(cache.generation(), [1; 32], record.clone());
        cache.fill(cache.generation(), [2; 32], record);
        apply(&cache, &hex::encode([1u8; 32]));
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_some());
        apply(&cache, "garbage");
        assert!(cache.get(&[2; 32]).is_none());
    }

    #[test]
    fn notices_received_before_a_connection_is_given_up_are_applied() {
        let cache = KeyCache::new(10);
        let record = Arc::new(crate::store::KeyRecord::sample());
        for d in [[1; 32], [2; 32], [3; 32]] {
            cache.fill(cache.generation(), d, record.clone());
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send(hex::encode([1u8; 32])).unwrap();
        tx.send(hex::encode([2u8; 32])).unwrap();
        drain(&cache, &mut rx);
        assert!(cache.get(&[1; 32]).is_none());
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[3; 32]).is_some());
    }

    #[test]
    fn held_records_outlast_the_listener_only_while_no_one_here_reaches_the_database() {
        let t = Duration::from_secs(2);
        assert_eq!(while_deaf(false, Duration::ZERO, t), Held::Keep);
        assert_eq!(while_deaf(false, t * 29, t), Held::Keep);
        assert_eq!(while_deaf(false, t * HELD_FOR_TIMEOUTS, t), Held::Forget);
        assert_eq!(while_deaf(true, Duration::ZERO, t), Held::Forget);
    }

    #[test]
    fn channel_names_are_quoted() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
