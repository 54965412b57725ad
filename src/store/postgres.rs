//! The PostgreSQL backend of [`Store`], which several gates can share.
//!
//! Every guarantee is kept by the database, not by a lock in one process:
//!
//! - each change is one transaction, committed (with `synchronous_commit`
//!   on) before its answer, at `read committed` whatever the server's
//!   default, so that what it checks after taking a lock includes every
//!   change made under that lock;
//! - an exchange locks its code's row (`SELECT … FOR UPDATE`), so of many
//!   concurrent exchanges on any gates exactly one finds it fresh;
//! - changes checked against other records (the client cap, a user's keys
//!   and codes) hold a transaction-scoped advisory lock on the user;
//! - a key is minted only under a share lock on its client's row, which a
//!   client's deletion takes exclusively, so no key outlives its client;
//! - revoked keys and deleted clients stay as rows without a record, so
//!   that importing again never brings them back; secrets are digests.
//!
//! Key records in use are kept in memory ([`KeyCache`]), as with sled, but
//! only while this gate hears revocations (see `listener`).
//! Every transaction that removes keys announces their digests with
//! `pg_notify` (delivered only if it commits) and each gate drops them on
//! receipt (see `listener`). All work on the database is bounded by the
//! configured timeout: past it the operation fails as
//! [`StoreError::Unavailable`], which requests answer 503.
//!
//! The pool's connections and the listener run on a small runtime of the
//! store's own, so that the store works the same whichever runtime (each of
//! Pingora's services has its own) calls it.

mod connect;
mod listener;
mod schema;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;

pub use schema::SchemaError;

use super::key_cache::KeyCache;
use super::sled_store::SPENT_CODE_RETENTION_MS;
use super::{
    ClientChange, ClientInsert, ClientRecord, CodeRecord, Digest, ImportCounts, KeyImport,
    KeyInsert, KeyRecord, Redeem, Redemption, Store, StoreError,
};
use crate::config::PostgresConfig;
use listener::Shared;

/// How many decoded key records are kept in memory, as with sled.
const KEY_CACHE_ENTRIES: usize = 65_536;

/// Why the PostgreSQL store could not be opened, worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("store.url: {0}")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot start the store's threads: {0}")]
    Runtime(std::io::Error),
}

/// The PostgreSQL-backed store.
pub struct PgStore {
    pool: Pool,
    shared: Arc<Shared>,
    /// The channel this database's gates announce removed keys on.
    channel: String,
    timeout: Duration,
    handle: tokio::runtime::Handle,
    /// Taken and shut down on close (or drop).
    runtime: Mutex<OwnRuntime>,
    stop: watch::Sender<bool>,
}

/// The error text of a database failure, with its SQLSTATE when the server sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// Classifies a failure: the server refusing a statement is a database
/// error; a lost or refused connection, or a server going away (SQLSTATE
/// classes 08, 53 and 57), means it is unavailable.
fn db_error(e: tokio_postgres::Error) -> StoreError {
    let unavailable = match e.as_db_error() {
        Some(db) => {
            let class = &db.code().code()[..2];
            matches!(class, "08" | "53" | "57")
        }
        None => true,
    };
    if unavailable {
        StoreError::Unavailable(describe(&e))
    } else {
        StoreError::Database(describe(&e))
    }
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("record: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Encode(e.to_string()))
}

/// A user ID as bigint, bit for bit (IDs above `i64::MAX` read back the same).
fn id(user: u64) -> i64 {
    user as i64
}

/// A time as bigint; the far future (e.g. `u64::MAX`) becomes the largest.
fn ms(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

/// A digest read from a `bytea` column.
fn digest_of(bytes: &[u8]) -> Result<Digest, StoreError> {
    Digest::try_from(bytes).map_err(|_| StoreError::Corrupt("a digest column".into()))
}

/// Starts a transaction at `read committed`, whatever the server's or the
/// role's default: each statement then sees what committed before it began,
/// so a count taken after the user's advisory lock includes every change
/// made under it, and a removal after a row lock finds the keys minted
/// under the lock it waited for. A `repeatable read` snapshot would predate
/// those locks (the cap would let extra clients in, and a key minted as
/// its client is deleted would outlive it).
async fn begin(
    c: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    c.build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(db_error)
}

/// The lock a change checked against a user's records holds.
fn user_lock(user: u64) -> String {
    format!("tachi-gate user {user}")
}

/// Removes live keys chosen by `filter` (on `$1`), locking them in digest
/// order so that concurrent removals cannot deadlock; the digests and old
/// records of those removed.
fn removal(filter: &str) -> String {
    format!(
        "WITH old AS (SELECT digest, record FROM keys WHERE {filter} AND record IS NOT NULL \
         ORDER BY digest FOR UPDATE) \
         UPDATE keys k SET record = NULL, token_id = NULL FROM old \
         WHERE k.digest = old.digest RETURNING k.digest, old.record"
    )
}

impl PgStore {
    /// Connects, migrates the schema and starts listening for revocations.
    pub fn open(config: &PostgresConfig) -> Result<PgStore, PgOpenError> {
        PgStore::open_with_key_cache(config, KEY_CACHE_ENTRIES)
    }

    /// [`PgStore::open`], keeping at most `entries` key records in memory.
    pub fn open_with_key_cache(
        config: &PostgresConfig,
        entries: usize,
    ) -> Result<PgStore, PgOpenError> {
        let settings = connect::parse(&config.url, config.timeout).map_err(PgOpenError::Url)?;
        let tls = connect::tls(&settings.verify).map_err(PgOpenError::Url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-postgres")
            .enable_all()
            .build()
            .map_err(PgOpenError::Runtime)?;
        let handle = runtime.handle().clone();
        let runtime = OwnRuntime(Some(runtime));
        let pg = settings.pg.clone();
        let connect_tls = tls.clone();
        let timeout = config.timeout;
        // On a thread of its own: the caller may be inside another runtime.
        let channel = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    handle.block_on(async move {
                        let (mut client, connection) =
                            tokio::time::timeout(timeout, pg.connect(connect_tls))
                                .await
                                .map_err(|_| {
                                    PgOpenError::Connect("no connection within the timeout".into())
                                })?
                                .map_err(|e| PgOpenError::Connect(describe(&e)))?;
                        let driver = tokio::spawn(connection);
                        let outcome = async {
                            schema::migrate(&mut client, timeout).await?;
                            let row = client
                                .query_one("SELECT current_schema()", &[])
                                .await
                                .map_err(|e| PgOpenError::Connect(describe(&e)))?;
                            let schema: Option<String> = row.get(0);
                            Ok::<_, PgOpenError>(channel_name(schema.as_deref()))
                        }
                        .await;
                        drop(client);
                        let _ = driver.await;
                        outcome
                    })
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(PgOpenError::Connect("the connecting thread failed".into()))
                })
        })?;
        let manager = deadpool_postgres::Manager::from_config(
            settings.pg.clone(),
            tls.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.timeout))
            .create_timeout(Some(config.timeout))
            .recycle_timeout(Some(config.timeout))
            .build()
            .map_err(|e| PgOpenError::Connect(e.to_string()))?;
        let shared = Arc::new(Shared {
            key_cache: KeyCache::new(entries),
            listening: AtomicBool::new(false),
            reachable: AtomicBool::new(true),
        });
        let (stop, stopped) = watch::channel(false);
        handle.spawn(listener::run(
            shared.clone(),
            listener::Target {
                pg: settings.pg,
                tls,
                channel: channel.clone(),
                timeout: config.timeout,
                pool: pool.clone(),
            },
            stopped,
        ));
        // Serve only once revocations are heard: the listener forgets every
        // record as it starts listening, which must not race the first reads.
        let started = std::time::Instant::now();
        while !shared.listening.load(Ordering::SeqCst) && started.elapsed() < config.timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !shared.listening.load(Ordering::SeqCst) {
            log::warn!("store: not yet listening for key revocations; still trying");
        }
        Ok(PgStore {
            pool,
            shared,
            channel,
            timeout: config.timeout,
            handle,
            runtime: Mutex::new(runtime),
            stop,
        })
    }

    /// Whether revocation notices are arriving (for tests and health).
    pub fn listening(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst)
    }

    /// A pooled connection. Taken on the store's runtime, where new
    /// connections then run; used from the caller's.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        let pool = self.pool.clone();
        match self.handle.spawn(async move { pool.get().await }).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(deadpool_postgres::PoolError::Backend(e))) => Err(db_error(e)),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Closing),
        }
    }

    /// Runs `op` within the store's timeout; a failure to reach the
    /// database is counted, and a success while not listening for
    /// revocations forgets every key held (see `listener`).
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let outcome = match tokio::time::timeout(self.timeout, op).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the database within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &outcome {
            Err(StoreError::Unavailable(_)) => crate::telemetry::STORE_UNAVAILABLE.inc(),
            // The database answers, but this gate hears no revocations:
            // other gates may be committing some, so nothing held is kept.
            Ok(_) if !self.listening() => self.shared.key_cache.forget_all(),
            _ => {}
        }
        outcome
    }

    /// One column of text per row of a query, decoded.
    async fn records<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<T>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let statement = client.prepare_cached(sql).await.map_err(db_error)?;
            let rows = client.query(&statement, params).await.map_err(db_error)?;
            rows.iter()
                .map(|row| decode(row.get::<_, &str>(0)))
                .collect()
        })
        .await
    }

    /// The first column of the first row, if any.
    async fn one_record<T: DeserializeOwned>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        Ok(self.records(sql, params).await?.into_iter().next())
    }

    /// Runs a removal of keys (see [`removal`]) in `tx` and announces it to
    /// every gate on commit; the digests and records removed.
    async fn remove_keys(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        filter: &str,
        param: &(dyn ToSql + Sync),
    ) -> Result<Vec<(Digest, KeyRecord)>, StoreError> {
        let statement = tx
            .prepare_cached(&removal(filter))
            .await
            .map_err(db_error)?;
        let rows = tx.query(&statement, &[param]).await.map_err(db_error)?;
        let mut removed = Vec::with_capacity(rows.len());
        for row in &rows {
            let digest = digest_of(row.get::<_, &[u8]>(0))?;
            removed.push((digest, decode(row.get::<_, &str>(1))?));
        }
        let digests: Vec<Digest> = removed.iter().map(|(d, _)| *d).collect();
        for payload in listener::payloads(&digests) {
            tx.execute("SELECT pg_notify($1, $2)", &[&self.channel, &payload])
                .await
                .map_err(db_error)?;
        }
        Ok(removed)
    }

    /// Passes on the outcome of a change that may have removed keys, having
    /// dropped their records from memory first: those it names, or every
    /// one when it failed (it may still have committed). Every removal goes
    /// through here, so this gate never serves a key it revoked.
    fn after_removing<T>(
        &self,
        outcome: Result<(T, Vec<Digest>), StoreError>,
    ) -> Result<T, StoreError> {
        match outcome {
            Ok((answer, removed)) => {
                self.shared.key_cache.forget(&removed);
                Ok(answer)
            }
            Err(e) => {
                self.shared.key_cache.forget_all();
                Err(e)
            }
        }
    }

    /// Takes the advisory lock on `user`'s records for the rest of `tx`.
    async fn lock_user(
        tx: &deadpool_postgres::Transaction<'_>,
        user: u64,
    ) -> Result<(), StoreError> {
        let statement = tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await
            .map_err(db_error)?;
        tx.execute(&statement, &[&user_lock(user)])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Whether `client_id` is a live client, holding its row against
    /// deletion until `tx` ends.
    async fn hold_client(
        tx: &deadpool_postgres::Transaction<'_>,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        let statement = tx
            .prepare_cached(
                "SELECT 1 FROM clients WHERE client_id = $1 AND record IS NOT NULL FOR KEY SHARE",
            )
            .await
            .map_err(db_error)?;
        Ok(tx
            .query_opt(&statement, &[&client_id])
            .await
            .map_err(db_error)?
            .is_some())
    }

    async fn insert_key_row(
        tx: &deadpool_postgres::Transaction<'_>,
        key: &Digest,
        record: &KeyRecord,
        if_absent: bool,
    ) -> Result<bool, StoreError> {
        let sql = if if_absent {
            "INSERT INTO keys (digest, token_id, user_id, from_client, created_on, record) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO keys (digest, token_id, user_id, from_client, created_on, record) \
             VALUES ($1, $2, $3, $4, $5, $6)"
        };
        let statement = tx.prepare_cached(sql).await.map_err(db_error)?;
        let n = tx
            .execute(
                &statement,
                &[
                    &&key[..],
                    &record.token_id,
                    &id(record.user_id),
                    &record.from_client,
                    &ms(record.created_on),
                    &encode(record)?,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(n == 1)
    }

    async fn insert_client_row(
        tx: &deadpool_postgres::Transaction<'_>,
        client: &ClientRecord,
        if_absent: bool,
    ) -> Result<bool, StoreError> {
        let sql = if if_absent {
            "INSERT INTO clients (client_id, author, created_on, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO clients (client_id, author, created_on, record) VALUES ($1, $2, $3, $4)"
        };
        let statement = tx.prepare_cached(sql).await.map_err(db_error)?;
        let n = tx
            .execute(
                &statement,
                &[
                    &client.client_id,
                    &id(client.author),
                    &ms(client.created_on),
                    &encode(client)?,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(n == 1)
    }

    /// Imports one key: added unless its digest is held, and only while
    /// its client (if it names one) is held, under the share lock minting
    /// takes, so that no key outlives its client.
    async fn import_key(
        tx: &deadpool_postgres::Transaction<'_>,
        key: &Digest,
        record: &KeyRecord,
    ) -> Result<KeyImport, StoreError> {
        let client_held = match &record.from_client {
            Some(client) => PgStore::hold_client(tx, client).await?,
            None => true,
        };
        if client_held {
            return Ok(if PgStore::insert_key_row(tx, key, record, true).await? {
                KeyImport::Added
            } else {
                KeyImport::Present
            });
        }
        let statement = tx
            .prepare_cached("SELECT 1 FROM keys WHERE digest = $1")
            .await
            .map_err(db_error)?;
        let held = tx
            .query_opt(&statement, &[&&key[..]])
            .await
            .map_err(db_error)?
            .is_some();
        Ok(if held {
            KeyImport::Present
        } else {
            KeyImport::Skipped
        })
    }

    /// Every live key with its digest, oldest first (for `store copy`).
    async fn live_keys(&self) -> Result<Vec<(Digest, KeyRecord)>, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT digest, record FROM keys WHERE record IS NOT NULL \
                     ORDER BY created_on, digest",
                    &[],
                )
                .await
                .map_err(db_error)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        digest_of(row.get::<_, &[u8]>(0))?,
                        decode(row.get::<_, &str>(1))?,
                    ))
                })
                .collect()
        })
        .await
    }

    fn shut_down(&self) {
        let _ = self.stop.send(true);
        self.pool.close();
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .shut_down();
    }
}

/// The store's runtime, shut down without waiting when dropped: a drop
/// may happen inside another runtime (a failed open, a test), where
/// waiting is not allowed. Nothing acknowledged is left in it: every
/// change has committed before its caller was answered.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl OwnRuntime {
    fn shut_down(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        self.shut_down();
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The notification channel of the gates sharing a schema: gates on other
/// schemas of the same database hear nothing of them.
fn channel_name(schema: Option<&str>) -> String {
    let mut name = format!("tachi_gate_keys.{}", schema.unwrap_or("public"));
    // Identifiers are at most 63 bytes; every gate cuts the same way.
    while name.len() > 63 {
        name.pop();
    }
    name
}

#[async_trait]
impl Store for PgStore {
    async fn insert_client(
        &self,
        client: &ClientRecord,
        cap: usize,
    ) -> Result<ClientInsert, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            PgStore::lock_user(&tx, client.author).await?;
            let statement = tx
                .prepare_cached(
                    "SELECT count(*) FROM clients WHERE author = $1 AND record IS NOT NULL",
                )
                .await
                .map_err(db_error)?;
            let owned: i64 = tx
                .query_one(&statement, &[&id(client.author)])
                .await
                .map_err(db_error)?
                .get(0);
            if usize::try_from(owned).unwrap_or(usize::MAX) >= cap {
                return Ok(ClientInsert::CapReached);
            }
            PgStore::insert_client_row(&tx, client, false).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(ClientInsert::Inserted)
        })
        .await
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.one_record(
            "SELECT record FROM clients WHERE client_id = $1 AND record IS NOT NULL",
            &[&client_id],
        )
        .await
    }

    async fn clients_of(&self, user_id: u64) -> Result<Vec<ClientRecord>, StoreError> {
        self.records(
            "SELECT record FROM clients WHERE author = $1 AND record IS NOT NULL \
             ORDER BY created_on, client_id",
            &[&id(user_id)],
        )
        .await
    }

    async fn modify_client(
        &self,
        client_id: &str,
        change: &ClientChange<'_>,
    ) -> Result<Option<ClientRecord>, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT record FROM clients WHERE client_id = $1 AND record IS NOT NULL \
                     FOR NO KEY UPDATE",
                    &[&client_id],
                )
                .await
                .map_err(db_error)?
            else {
                return Ok(None);
            };
            let mut record: ClientRecord = decode(row.get::<_, &str>(0))?;
            let (client_id, author) = (record.client_id.clone(), record.author);
            change(&mut record);
            record.client_id = client_id;
            record.author = author;
            tx.execute(
                "UPDATE clients SET record = $2 WHERE client_id = $1",
                &[&record.client_id, &encode(&record)?],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(Some(record))
        })
        .await
    }

    async fn delete_client(&self, client_id: &str) -> Result<Option<usize>, StoreError> {
        let outcome = self
            .bounded(async {
                let mut c = self.client().await?;
                let tx = begin(&mut c).await?;
                // Exclusive: no key can be minted for it from here on.
                let held = tx
                    .query_opt(
                        "SELECT 1 FROM clients WHERE client_id = $1 AND record IS NOT NULL \
                         FOR UPDATE",
                        &[&client_id],
                    )
                    .await
                    .map_err(db_error)?;
                if held.is_none() {
                    return Ok((None, Vec::new()));
                }
                tx.execute(
                    "UPDATE clients SET record = NULL WHERE client_id = $1",
                    &[&client_id],
                )
                .await
                .map_err(db_error)?;
                let removed = self
                    .remove_keys(&tx, "from_client = $1", &client_id)
                    .await?;
                tx.commit().await.map_err(db_error)?;
                let digests: Vec<Digest> = removed.iter().map(|(d, _)| *d).collect();
                Ok((Some(digests.len()), digests))
            })
            .await;
        self.after_removing(outcome)
    }

    async fn insert_code(
        &self,
        code: &Digest,
        record: &CodeRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            PgStore::lock_user(&tx, record.user_id).await?;
            let statement = tx
                .prepare_cached(
                    "SELECT digest FROM codes WHERE user_id = $1 AND redeemed_at IS NULL \
                     AND expires_at > $2 ORDER BY created_on, digest",
                )
                .await
                .map_err(db_error)?;
            let live = tx
                .query(&statement, &[&id(record.user_id), &ms(record.created_on)])
                .await
                .map_err(db_error)?;
            let excess = (live.len() + 1).saturating_sub(keep);
            let oldest: Vec<&[u8]> = live
                .iter()
                .take(excess)
                .map(|row| row.get::<_, &[u8]>(0))
                .collect();
            let evicted = if oldest.is_empty() {
                0
            } else {
                tx.execute(
                    "DELETE FROM codes WHERE digest = ANY($1) AND redeemed_at IS NULL",
                    &[&oldest],
                )
                .await
                .map_err(db_error)?
            };
            let statement = tx
                .prepare_cached(
                    "INSERT INTO codes (digest, user_id, created_on, expires_at, record) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .await
                .map_err(db_error)?;
            tx.execute(
                &statement,
                &[
                    &&code[..],
                    &id(record.user_id),
                    &ms(record.created_on),
                    &ms(record.expires_at),
                    &encode(record)?,
                ],
            )
            .await
            .map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            Ok(usize::try_from(evicted).unwrap_or(usize::MAX))
        })
        .await
    }

    async fn code(&self, code: &Digest) -> Result<Option<CodeRecord>, StoreError> {
        self.one_record("SELECT record FROM codes WHERE digest = $1", &[&&code[..]])
            .await
    }

    async fn redeem_code(
        &self,
        code: &Digest,
        key: &Digest,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<Redeem, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            // Every other exchange of this code waits here until this one
            // ends, then sees it spent.
            let statement = tx
                .prepare_cached("SELECT record FROM codes WHERE digest = $1 FOR UPDATE")
                .await
                .map_err(db_error)?;
            let Some(row) = tx
                .query_opt(&statement, &[&&code[..]])
                .await
                .map_err(db_error)?
            else {
                return Ok(Redeem::Lost);
            };
            let mut code_record: CodeRecord = decode(row.get::<_, &str>(0))?;
            let client_id = record.from_client.clone().unwrap_or_default();
            if !code_record.is_fresh(now_ms) || !PgStore::hold_client(&tx, &client_id).await? {
                return Ok(Redeem::Lost);
            }
            code_record.redeemed = Some(Redemption {
                key_hash: hex::encode(key),
                client_id,
                at: now_ms,
            });
            let statement = tx
                .prepare_cached("UPDATE codes SET record = $2, redeemed_at = $3 WHERE digest = $1")
                .await
                .map_err(db_error)?;
            tx.execute(
                &statement,
                &[&&code[..], &encode(&code_record)?, &ms(now_ms)],
            )
            .await
            .map_err(db_error)?;
            PgStore::insert_key_row(&tx, key, record, false).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(Redeem::Issued)
        })
        .await
    }

    async fn revoke_code_keys(&self, code: &Digest) -> Result<usize, StoreError> {
        let Some(record) = self.code(code).await? else {
            return Ok(0);
        };
        let Some(redemption) = record.redeemed else {
            return Ok(0);
        };
        let Some(hash) = crate::store::digest_from_hex(&redemption.key_hash) else {
            return Err(StoreError::Corrupt("key hash in a code record".into()));
        };
        let outcome = self
            .bounded(async {
                let mut c = self.client().await?;
                let tx = begin(&mut c).await?;
                let removed = self.remove_keys(&tx, "digest = $1", &&hash[..]).await?;
                tx.commit().await.map_err(db_error)?;
                Ok((removed.len(), vec![hash]))
            })
            .await;
        self.after_removing(outcome)
    }

    async fn sweep_codes(&self, now_ms: u64) -> Result<usize, StoreError> {
        let now = ms(now_ms);
        let spent_before = now.saturating_sub(ms(SPENT_CODE_RETENTION_MS));
        self.bounded(async {
            let client = self.client().await?;
            // A spent code is kept for its retention time, for replay detection.
            let n = client
                .execute(
                    "DELETE FROM codes WHERE expires_at < $1 \
                     AND (redeemed_at IS NULL OR redeemed_at <= $2)",
                    &[&now, &spent_before],
                )
                .await
                .map_err(db_error)?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
        .await
    }

    fn key_in_memory(&self, key: &Digest) -> Option<Arc<KeyRecord>> {
        self.shared.key_cache.get(key)
    }

    async fn key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(hit) = self.shared.key_cache.get(key) {
            return Ok(Some(hit));
        }
        let started = std::time::Instant::now();
        let seen = self.shared.key_cache.generation();
        let found: Option<KeyRecord> = self
            .one_record(
                "SELECT record FROM keys WHERE digest = $1 AND record IS NOT NULL",
                &[&&key[..]],
            )
            .await?;
        crate::telemetry::STORE_KEY_READ.observe(started.elapsed().as_secs_f64());
        let found = found.map(Arc::new);
        // Kept only while revocations are heard: one committed meanwhile
        // through another gate would otherwise go unnoticed here.
        if let (Some(record), true) = (&found, self.listening()) {
            self.shared.key_cache.fill(seen, *key, record.clone());
        }
        Ok(found)
    }

    async fn key_by_token_id(
        &self,
        token_id: &str,
    ) -> Result<Option<(Digest, Arc<KeyRecord>)>, StoreError> {
        let digest = self
            .bounded(async {
                let client = self.client().await?;
                let row = client
                    .query_opt(
                        "SELECT digest FROM keys WHERE token_id = $1 AND record IS NOT NULL",
                        &[&token_id],
                    )
                    .await
                    .map_err(db_error)?;
                row.map(|r| digest_of(r.get::<_, &[u8]>(0))).transpose()
            })
            .await?;
        match digest {
            Some(d) => Ok(self.key(&d).await?.map(|r| (d, r))),
            None => Ok(None),
        }
    }

    async fn keys_of_user(&self, user_id: u64) -> Result<Vec<KeyRecord>, StoreError> {
        self.records(
            "SELECT record FROM keys WHERE user_id = $1 AND record IS NOT NULL \
             ORDER BY created_on, digest",
            &[&id(user_id)],
        )
        .await
    }

    async fn key_count_of_user(&self, user_id: u64) -> Result<usize, StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "SELECT count(*) FROM keys WHERE user_id = $1 AND record IS NOT NULL",
                )
                .await
                .map_err(db_error)?;
            let n: i64 = client
                .query_one(&statement, &[&id(user_id)])
                .await
                .map_err(db_error)?
                .get(0);
            Ok(usize::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn keys_of_client(&self, client_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.records(
            "SELECT record FROM keys WHERE from_client = $1 AND record IS NOT NULL \
             ORDER BY created_on, digest",
            &[&client_id],
        )
        .await
    }

    async fn insert_key(&self, key: &Digest, record: &KeyRecord) -> Result<KeyInsert, StoreError> {
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            PgStore::lock_user(&tx, record.user_id).await?;
            let again = match &record.from_client {
                Some(client) => {
                    if !PgStore::hold_client(&tx, client).await? {
                        return Ok(KeyInsert::NoSuchClient);
                    }
                    tx.query_opt(
                        "SELECT 1 FROM keys WHERE user_id = $1 AND from_client = $2 \
                         AND record IS NOT NULL LIMIT 1",
                        &[&id(record.user_id), client],
                    )
                    .await
                    .map_err(db_error)?
                    .is_some()
                }
                None => false,
            };
            PgStore::insert_key_row(&tx, key, record, false).await?;
            tx.commit().await.map_err(db_error)?;
            Ok(if again {
                KeyInsert::InsertedAgain
            } else {
                KeyInsert::Inserted
            })
        })
        .await
    }

    async fn revoke_key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let outcome = self
            .bounded(async {
                let mut c = self.client().await?;
                let tx = begin(&mut c).await?;
                let removed = self.remove_keys(&tx, "digest = $1", &&key[..]).await?;
                tx.commit().await.map_err(db_error)?;
                let record = removed.into_iter().next().map(|(_, r)| Arc::new(r));
                Ok((record, vec![*key]))
            })
            .await;
        self.after_removing(outcome)
    }

    async fn revoke_user_keys(&self, user_id: u64) -> Result<usize, StoreError> {
        let outcome = self
            .bounded(async {
                let mut c = self.client().await?;
                let tx = begin(&mut c).await?;
                PgStore::lock_user(&tx, user_id).await?;
                // Unexchanged codes of the user would become keys later: they go too.
                tx.execute(
                    "DELETE FROM codes WHERE user_id = $1 AND redeemed_at IS NULL",
                    &[&id(user_id)],
                )
                .await
                .map_err(db_error)?;
                let removed = self.remove_keys(&tx, "user_id = $1", &id(user_id)).await?;
                tx.commit().await.map_err(db_error)?;
                let digests: Vec<Digest> = removed.iter().map(|(d, _)| *d).collect();
                Ok((digests.len(), digests))
            })
            .await;
        self.after_removing(outcome)
    }

    async fn all_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.records(
            "SELECT record FROM clients WHERE record IS NOT NULL ORDER BY created_on, client_id",
            &[],
        )
        .await
    }

    async fn all_keys(&self) -> Result<Vec<(Digest, KeyRecord)>, StoreError> {
        self.live_keys().await
    }

    async fn import(
        &self,
        clients: &[ClientRecord],
        keys: &[(Digest, KeyRecord)],
    ) -> Result<ImportCounts, StoreError> {
        let mut counts = ImportCounts::default();
        self.bounded(async {
            let mut c = self.client().await?;
            let tx = begin(&mut c).await?;
            for client in clients {
                if PgStore::insert_client_row(&tx, client, true).await? {
                    counts.clients_added += 1;
                } else {
                    counts.clients_present += 1;
                }
            }
            for (digest, record) in keys {
                counts.count_key(PgStore::import_key(&tx, digest, record).await?);
            }
            tx.commit().await.map_err(db_error)?;
            Ok(())
        })
        .await?;
        Ok(counts)
    }

    fn healthy(&self) -> Result<(), StoreError> {
        if self.shared.reachable.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "the database is unreachable".into(),
            ))
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        self.shut_down();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_per_schema_and_short_enough() {
        assert_eq!(channel_name(None), "tachi_gate_keys.public");
        assert_eq!(channel_name(Some("gate_a")), "tachi_gate_keys.gate_a");
        assert!(channel_name(Some(&"x".repeat(80))).len() <= 63);
    }

    #[test]
    fn unsigned_ids_and_far_times_fit_bigint() {
        assert_eq!(id(u64::MAX) as u64, u64::MAX);
        assert_eq!(ms(u64::MAX), i64::MAX);
        assert_eq!(ms(5), 5);
    }

    fn second_store(f: &crate::store::suite::PgFixture) -> PgStore {
        PgStore::open(&PostgresConfig {
            url: f.url.clone(),
            pool_size: 2,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_removed_through_one_store_leaves_the_others_memory() {
        use crate::store::suite::{client, key};
        let f = crate::store::suite::PgFixture::open();
        let other = second_store(&f);
        f.store.insert_client(&client("CI1", 1), 10).await.unwrap();
        let (a, b) = (crate::store::digest("a"), crate::store::digest("b"));
        f.store.insert_key(&a, &key("CI1")).await.unwrap();
        f.store.insert_key(&b, &key("CI1")).await.unwrap();
        for k in [&a, &b] {
            assert!(other.key(k).await.unwrap().is_some());
            assert!(other.key_in_memory(k).is_some());
        }
        f.store.revoke_key(&a).await.unwrap();
        let started = std::time::Instant::now();
        while other.key_in_memory(&a).is_some() {
            assert!(started.elapsed() < Duration::from_secs(1), "not heard");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(
            other.key_in_memory(&b).is_some(),
            "only the revoked key goes"
        );
        f.store.delete_client("CI1").await.unwrap();
        let started = std::time::Instant::now();
        while other.key_in_memory(&b).is_some() {
            assert!(started.elapsed() < Duration::from_secs(1), "not heard");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        other.close().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_schema_newer_than_known_is_refused() {
        let f = crate::store::suite::PgFixture::open();
        f.store.close().unwrap();
        let newer = schema::known_version() + 1;
        let url = f.url.clone();
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
                c.execute(
                    "INSERT INTO tachi_gate_schema_history (version, name) VALUES ($1, 'later')",
                    &[&(newer as i32)],
                )
                .await
                .unwrap();
            });
        })
        .join()
        .unwrap();
        let Err(e) = PgStore::open(&PostgresConfig {
            url: f.url.clone(),
            pool_size: 1,
            timeout: Duration::from_secs(5),
        }) else {
            panic!("opened a newer schema")
        };
        assert!(
            matches!(e, PgOpenError::Schema(SchemaError::Newer { .. })),
            "{e}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_lock_held_too_long_stops_start_up_in_one_line() {
        let f = crate::store::suite::PgFixture::open();
        f.store.close().unwrap();
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let url = f.url.clone();
        let holder = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.execute("SELECT pg_advisory_lock($1)", &[&schema::MIGRATION_LOCK])
                    .await
                    .unwrap();
                held_tx.send(()).unwrap();
                let _ = released.await;
            });
        });
        held.recv().unwrap();
        // 100 ms: start-up may take 30 times that, 3 s.
        let started = std::time::Instant::now();
        let outcome = PgStore::open(&PostgresConfig {
            url: f.url.clone(),
            pool_size: 1,
            timeout: Duration::from_millis(100),
        });
        let took = started.elapsed();
        let _ = release.send(());
        holder.join().unwrap();
        let Err(e) = outcome else {
            panic!("started while another gate held the migration lock")
        };
        let said = e.to_string();
        assert!(
            matches!(e, PgOpenError::Schema(SchemaError::Timeout { .. })),
            "{said}"
        );
        assert!(!said.contains('\n'), "{said}");
        assert!(
            said.contains("waiting for another gate's migration"),
            "{said}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn removals_lock_in_one_order() {
        let sql = removal("user_id = $1");
        assert!(sql.contains("ORDER BY digest FOR UPDATE"), "{sql}");
        assert!(sql.contains("user_id = $1 AND record IS NOT NULL"), "{sql}");
    }
}
