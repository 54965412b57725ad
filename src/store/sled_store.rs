//! The sled backend of [`Store`].
//!
//! Trees (keys are raw bytes, values JSON records unless noted):
//!
//! | tree             | key                                   | value        |
//! |------------------|---------------------------------------|--------------|
//! | `clients`        | client ID                             | ClientRecord |
//! | `clients_by_user`| author (u64 BE) ‖ client ID           | empty        |
//! | `codes`          | SHA-256(code)                         | CodeRecord   |
//! | `code_purge`     | sweep time (u64 BE ms) ‖ SHA-256(code)| empty        |
//! | `keys`           | SHA-256(key)                          | KeyRecord    |
//! | `key_ids`        | token ID                              | SHA-256(key) |
//! | `keys_by_client` | len(client ID) ‖ client ID ‖ SHA-256(key) | empty    |
//! | `keys_by_user`   | user (u64 BE) ‖ SHA-256(key)          | empty        |
//! | `codes_by_user`  | user ‖ created (u64 BE ms) ‖ SHA-256(code) | empty   |
//!
//! A revoked key and a deleted client leave an empty tombstone under their
//! digest or ID, so that re-running an import cannot bring them back.
//!
//! Indexes are only ever read through the primary record they point at, and
//! every multi-tree change is one small sled transaction, so a crash never
//! leaves an index and its record disagreeing.

mod exchange;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::key_cache::KeyCache;
use super::{
    ClientChange, ClientInsert, ClientRecord, CodeRecord, Digest, GroupCommit, ImportCounts,
    KeyImport, KeyInsert, KeyRecord, Redeem, Store, StoreError,
};

/// How long a spent code is remembered after its exchange, so that a replay
/// within that time still revokes the key it produced.
pub const SPENT_CODE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// How many decoded key records are kept in memory (a few hundred bytes each).
const KEY_CACHE_ENTRIES: usize = 65_536;

/// The sled-backed store. One process may hold it at a time.
pub struct SledStore {
    db: sled::Db,
    clients: sled::Tree,
    clients_by_user: sled::Tree,
    codes: sled::Tree,
    code_purge: sled::Tree,
    keys: sled::Tree,
    key_ids: sled::Tree,
    keys_by_client: sled::Tree,
    keys_by_user: sled::Tree,
    /// A user's codes by age, to keep their number bounded.
    codes_by_user: sled::Tree,
    /// Live key records recently read; removed keys are dropped from it.
    key_cache: KeyCache,
    /// Token exchanges, applied in batches by their own writer thread (which
    /// holds the other handle on `commit`, so the flusher outlives it).
    exchanges: exchange::Exchanges,
    commit: Arc<GroupCommit>,
    /// Serialises creations checked against existing records (the client cap,
    /// one key per client), so the checks hold under concurrency.
    creation: tokio::sync::Mutex<()>,
    /// Key creation holds it shared, client deletion exclusively: a key can then
    /// never be minted for a client between the scan of its keys and its removal.
    client_keys: Arc<tokio::sync::RwLock<()>>,
}

/// The ways opening a store fails, each worded for the operator.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// Another process holds the store (a graceful upgrade waits for this).
    #[error("the store at {path} is locked by another process (is another tachi-gate using it?)")]
    Locked { path: String },
    #[error("the store at {path} is not writable: {source}")]
    NotWritable { path: String, source: sled::Error },
    #[error("cannot open the store at {path}: {source}")]
    Db { path: String, source: sled::Error },
    #[error("cannot open the store log in {path}: {source}")]
    Log {
        path: String,
        source: std::io::Error,
    },
    /// One of the store's threads (named) could not be started.
    #[error("cannot start the store {thread}: {source}")]
    Thread {
        thread: &'static str,
        source: std::io::Error,
    },
}

impl SledStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SledStore, OpenError> {
        SledStore::open_with_key_cache(path, KEY_CACHE_ENTRIES)
    }

    /// [`SledStore::open`], keeping at most `entries` decoded key records in
    /// memory (0: none, every key check reads the store).
    pub fn open_with_key_cache(path: &Path, entries: usize) -> Result<SledStore, OpenError> {
        let shown = path.display().to_string();
        std::fs::create_dir_all(path).map_err(|source| OpenError::CreateDir {
            path: shown.clone(),
            source,
        })?;
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            // No timer flushes: every acknowledged change is flushed by the
            // group commit before its answer, and nothing else needs to be.
            .flush_every_ms(None)
            .open()
            .map_err(|e| open_error(path, e))?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| OpenError::Db {
                path: shown.clone(),
                source,
            })
        };
        let db_file = std::fs::File::open(path.join("db")).map_err(|source| OpenError::Log {
            path: shown.clone(),
            source,
        })?;
        let commit = Arc::new(GroupCommit::start(db.clone(), db_file).map_err(|source| {
            OpenError::Thread {
                thread: "flusher",
                source,
            }
        })?);
        let client_keys = Arc::new(tokio::sync::RwLock::new(()));
        let (clients, codes, code_purge) = (tree("clients")?, tree("codes")?, tree("code_purge")?);
        let (keys, key_ids) = (tree("keys")?, tree("key_ids")?);
        let (keys_by_client, keys_by_user) = (tree("keys_by_client")?, tree("keys_by_user")?);
        let exchanges = exchange::start(
            exchange::ExchangeTrees {
                clients: clients.clone(),
                codes: codes.clone(),
                keys: keys.clone(),
                key_ids: key_ids.clone(),
                keys_by_client: keys_by_client.clone(),
                keys_by_user: keys_by_user.clone(),
            },
            client_keys.clone(),
            commit.clone(),
        )
        .map_err(|source| OpenError::Thread {
            thread: "writer",
            source,
        })?;
        Ok(SledStore {
            clients,
            clients_by_user: tree("clients_by_user")?,
            codes_by_user: tree("codes_by_user")?,
            codes,
            code_purge,
            keys,
            key_ids,
            keys_by_client,
            keys_by_user,
            db,
            key_cache: KeyCache::new(entries),
            exchanges,
            commit,
            creation: tokio::sync::Mutex::new(()),
            client_keys,
        })
    }

    /// Reads the key records an index points at (`prefix` ‖ digest entries).
    fn keys_under(&self, index: &sled::Tree, prefix: &[u8]) -> Result<Vec<KeyRecord>, StoreError> {
        records_under(&self.keys, index, prefix, |k: &KeyRecord| k.created_on)
    }

    /// Removes keys by digest in one transaction; how many existed.
    fn remove_keys(&self, hashes: &[Vec<u8>]) -> Result<usize, StoreError> {
        let outcome = tx_result(
            (
                &self.keys,
                &self.key_ids,
                &self.keys_by_client,
                &self.keys_by_user,
            )
                .transaction(|(keys, key_ids, keys_by_client, keys_by_user)| {
                    let trees = KeyTrees {
                        keys,
                        key_ids,
                        keys_by_client,
                        keys_by_user,
                    };
                    trees.remove_all(hashes)
                }),
        );
        self.after_removing_keys(hashes, outcome)
    }

    /// Passes on the outcome of a transaction that may have removed the keys
    /// `hashes`, having dropped their in-memory records whatever that
    /// outcome. Every removal of keys goes through here, so no revoked key is
    /// ever served from memory.
    fn after_removing_keys<T>(&self, hashes: &[Vec<u8>], outcome: T) -> T {
        self.key_cache.forget(hashes);
        outcome
    }

    /// How many flushes the group commit has run (to observe batching).
    pub fn flush_count(&self) -> u64 {
        self.commit.flush_count()
    }
}

/// Classifies sled's error on opening. sled 0.34.7 (`Config::open`, in its
/// config.rs) reports a held lock as an `Io` error of kind `Other` whose only
/// mark is its text ("could not acquire lock on …"), so that one case is
/// recognised by the text, here at the boundary and nowhere else.
fn open_error(path: &Path, e: sled::Error) -> OpenError {
    use std::io::ErrorKind;
    let path = path.display().to_string();
    match &e {
        sled::Error::Io(io)
            if io.kind() == ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            OpenError::Locked { path }
        }
        sled::Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            OpenError::NotWritable { path, source: e }
        }
        _ => OpenError::Db { path, source: e },
    }
}

/// What a revoked key or a deleted client leaves behind: an empty value. It
/// reads as absent everywhere, but an import sees that the ID is taken.
const TOMBSTONE: &[u8] = &[];

/// A stored value, unless it is a tombstone.
fn live(value: Option<sled::IVec>) -> Option<sled::IVec> {
    value.filter(|v| !v.is_empty())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("record: {e}")))
}

/// The live records of `primary` that `index` lists under `prefix` (its
/// entries are `prefix` ‖ primary key), oldest first.
fn records_under<T: DeserializeOwned>(
    primary: &sled::Tree,
    index: &sled::Tree,
    prefix: &[u8],
    created_on: impl Fn(&T) -> u64,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for entry in index.scan_prefix(prefix) {
        let (k, _) = entry?;
        if let Some(bytes) = live(primary.get(&k[prefix.len()..])?) {
            out.push(decode::<T>(&bytes)?);
        }
    }
    out.sort_by_key(|r| created_on(r));
    Ok(out)
}

/// Decodes inside a transaction, where errors must be transaction errors.
fn tx_decode<T: DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, ConflictableTransactionError<StoreError>> {
    decode(bytes).map_err(ConflictableTransactionError::Abort)
}

fn tx_encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ConflictableTransactionError<StoreError>> {
    encode(value).map_err(ConflictableTransactionError::Abort)
}

fn tx_result<T>(r: Result<T, TransactionError<StoreError>>) -> Result<T, StoreError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    })
}

fn user_prefix(user_id: u64) -> [u8; 8] {
    user_id.to_be_bytes()
}

fn client_prefix(client_id: &str) -> Vec<u8> {
    // Length-prefixed so that no client ID is a prefix of another's entries.
    let len = u8::try_from(client_id.len()).unwrap_or(u8::MAX);
    let mut k = Vec::with_capacity(1 + client_id.len() + 32);
    k.push(len);
    k.extend_from_slice(client_id.as_bytes());
    k
}

/// A key's index entries (their values are empty): its `keys_by_client`
/// entry, for a key issued through a client, and its `keys_by_user` entry.
/// Adding and revoking a key both take them from here, as does the issuance
/// bench's floor, so that all agree on the layout.
pub fn key_index_entries(hash: &[u8], record: &KeyRecord) -> (Option<Vec<u8>>, Vec<u8>) {
    let by_client = record
        .from_client
        .as_ref()
        .map(|client| joined(&client_prefix(client), hash));
    (by_client, joined(&user_prefix(record.user_id), hash))
}

/// A `codes_by_user` key: the user, then the code's creation time, so a
/// prefix scan lists a user's codes oldest first.
fn user_code_key(user_id: u64, created_on: u64, code: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.extend_from_slice(&user_prefix(user_id));
    k.extend_from_slice(&created_on.to_be_bytes());
    k.extend_from_slice(code);
    k
}

fn joined(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// A stored code digest as a [`Digest`] (keys of the `codes` tree are 32 bytes).
fn digest_of(bytes: &[u8]) -> Digest {
    let mut d = [0u8; 32];
    let n = bytes.len().min(32);
    d[..n].copy_from_slice(&bytes[..n]);
    d
}

fn purge_key(at_ms: u64, code: &Digest) -> Vec<u8> {
    joined(&at_ms.to_be_bytes(), code)
}

/// The key trees as seen inside one transaction. The outcome of a
/// transaction that calls [`KeyTrees::remove`] goes through
/// [`SledStore::after_removing_keys`], with the digest of every key it may
/// remove, or a revoked key could still be served from memory.
struct KeyTrees<'a> {
    keys: &'a TransactionalTree,
    key_ids: &'a TransactionalTree,
    keys_by_client: &'a TransactionalTree,
    keys_by_user: &'a TransactionalTree,
}

impl KeyTrees<'_> {
    fn insert(
        &self,
        hash: &Digest,
        record: &KeyRecord,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        self.keys.insert(&hash[..], tx_encode(record)?)?;
        self.key_ids.insert(record.token_id.as_bytes(), &hash[..])?;
        let (by_client, by_user) = key_index_entries(hash, record);
        if let Some(entry) = by_client {
            self.keys_by_client.insert(entry, &[][..])?;
        }
        self.keys_by_user.insert(by_user, &[][..])?;
        Ok(())
    }

    /// Revokes a key: its record becomes a tombstone (so that no import brings
    /// it back) and its index entries go; whether it was live.
    fn remove(&self, hash: &[u8]) -> Result<bool, ConflictableTransactionError<StoreError>> {
        let Some(bytes) = live(self.keys.get(hash)?) else {
            return Ok(false);
        };
        self.keys.insert(hash, TOMBSTONE)?;
        let record: KeyRecord = tx_decode(&bytes)?;
        self.key_ids.remove(record.token_id.as_bytes())?;
        let (by_client, by_user) = key_index_entries(hash, &record);
        if let Some(entry) = by_client {
            self.keys_by_client.remove(entry)?;
        }
        self.keys_by_user.remove(by_user)?;
        Ok(true)
    }

    /// Revokes each key in `hashes`; how many were live.
    fn remove_all(
        &self,
        hashes: &[Vec<u8>],
    ) -> Result<usize, ConflictableTransactionError<StoreError>> {
        let mut n = 0;
        for h in hashes {
            if self.remove(h)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[async_trait]
impl Store for SledStore {
    async fn insert_client(
        &self,
        client: &ClientRecord,
        cap: usize,
    ) -> Result<ClientInsert, StoreError> {
        {
            let _guard = self.creation.lock().await;
            let owned = self
                .clients_by_user
                .scan_prefix(user_prefix(client.author))
                .count();
            if owned >= cap {
                return Ok(ClientInsert::CapReached);
            }
            let value = encode(client)?;
            tx_result(
                (&self.clients, &self.clients_by_user).transaction(|(clients, by_user)| {
                    clients.insert(client.client_id.as_bytes(), value.clone())?;
                    by_user.insert(
                        joined(&user_prefix(client.author), client.client_id.as_bytes()),
                        &[][..],
                    )?;
                    Ok(())
                }),
            )?;
        }
        self.commit.durable().await?;
        Ok(ClientInsert::Inserted)
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        match live(self.clients.get(client_id.as_bytes())?) {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn clients_of(&self, user_id: u64) -> Result<Vec<ClientRecord>, StoreError> {
        records_under(
            &self.clients,
            &self.clients_by_user,
            &user_prefix(user_id),
            |c: &ClientRecord| c.created_on,
        )
    }

    async fn modify_client(
        &self,
        client_id: &str,
        change: &ClientChange<'_>,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let updated = tx_result(self.clients.transaction(|clients| {
            let Some(old) = live(clients.get(client_id.as_bytes())?) else {
                return Ok(None);
            };
            let mut record: ClientRecord = tx_decode(&old)?;
            let (id, author) = (record.client_id.clone(), record.author);
            change(&mut record);
            record.client_id = id;
            record.author = author;
            clients.insert(client_id.as_bytes(), tx_encode(&record)?)?;
            Ok(Some(record))
        }))?;
        if updated.is_some() {
            self.commit.durable().await?;
        }
        Ok(updated)
    }

    async fn delete_client(&self, client_id: &str) -> Result<Option<usize>, StoreError> {
        let removed = {
            let _exclusive = self.client_keys.write().await;
            let prefix = client_prefix(client_id);
            let mut hashes = Vec::new();
            for entry in self.keys_by_client.scan_prefix(&prefix) {
                let (k, _) = entry?;
                hashes.push(k[prefix.len()..].to_vec());
            }
            let outcome = tx_result(
                (
                    &self.clients,
                    &self.clients_by_user,
                    &self.keys,
                    &self.key_ids,
                    &self.keys_by_client,
                    &self.keys_by_user,
                )
                    .transaction(
                        |(clients, by_user, keys, key_ids, by_client, keys_by_user)| {
                            let Some(old) = live(clients.get(client_id.as_bytes())?) else {
                                return Ok(None);
                            };
                            // A tombstone, so that no import brings the client back.
                            clients.insert(client_id.as_bytes(), TOMBSTONE)?;
                            let old: ClientRecord = tx_decode(&old)?;
                            by_user
                                .remove(joined(&user_prefix(old.author), client_id.as_bytes()))?;
                            let trees = KeyTrees {
                                keys,
                                key_ids,
                                keys_by_client: by_client,
                                keys_by_user,
                            };
                            Ok(Some(trees.remove_all(&hashes)?))
                        },
                    ),
            );
            self.after_removing_keys(&hashes, outcome)?
        };
        if removed.is_some() {
            self.commit.durable().await?;
        }
        Ok(removed)
    }

    async fn insert_code(
        &self,
        code: &Digest,
        record: &CodeRecord,
        keep: usize,
    ) -> Result<usize, StoreError> {
        let value = encode(record)?;
        // The user's live codes, oldest first; entries of codes that are
        // gone, spent or expired are dropped on the way.
        let mut live = Vec::new();
        for entry in self.codes_by_user.scan_prefix(user_prefix(record.user_id)) {
            let (index, _) = entry?;
            let held = digest_of(&index[16..]);
            let fresh = match self.codes.get(held)? {
                Some(bytes) => decode::<CodeRecord>(&bytes)?.is_fresh(record.created_on),
                None => false,
            };
            if fresh {
                live.push((index, held));
            } else {
                self.codes_by_user.remove(&index)?;
            }
        }
        let excess = (live.len() + 1).saturating_sub(keep);
        let index = user_code_key(record.user_id, record.created_on, code);
        let evicted = tx_result(
            (&self.codes, &self.code_purge, &self.codes_by_user).transaction(
                |(codes, purge, by_user)| {
                    let mut evicted = 0;
                    for (old_index, old) in live.iter().take(excess) {
                        by_user.remove(old_index)?;
                        // Spent since the scan: kept, for replay detection.
                        let Some(old_record) = codes
                            .get(&old[..])?
                            .map(|bytes| tx_decode::<CodeRecord>(&bytes))
                            .transpose()?
                        else {
                            continue;
                        };
                        if old_record.redeemed.is_none() {
                            codes.remove(&old[..])?;
                            purge.remove(purge_key(old_record.expires_at, old))?;
                            evicted += 1;
                        }
                    }
                    codes.insert(&code[..], value.clone())?;
                    purge.insert(purge_key(record.expires_at, code), &[][..])?;
                    by_user.insert(index.clone(), &[][..])?;
                    Ok(evicted)
                },
            ),
        )?;
        self.commit.durable().await?;
        Ok(evicted)
    }

    async fn code(&self, code: &Digest) -> Result<Option<CodeRecord>, StoreError> {
        match self.codes.get(code)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn redeem_code(
        &self,
        code: &Digest,
        key: &Digest,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<Redeem, StoreError> {
        let (outcome, ticket) = self
            .exchanges
            .submit(exchange::Exchange {
                code: *code,
                key: *key,
                record: record.clone(),
                now_ms,
            })
            .await?;
        if let Some(ticket) = ticket {
            self.commit.wait(ticket).await?;
        }
        Ok(outcome)
    }

    async fn revoke_code_keys(&self, code: &Digest) -> Result<usize, StoreError> {
        let Some(record) = self.code(code).await? else {
            return Ok(0);
        };
        let Some(redemption) = record.redeemed else {
            return Ok(0);
        };
        let Ok(hash) = hex::decode(&redemption.key_hash) else {
            return Err(StoreError::Corrupt("key hash in a code record".into()));
        };
        let removed = self.remove_keys(&[hash])?;
        self.commit.durable().await?;
        Ok(removed)
    }

    async fn sweep_codes(&self, now_ms: u64) -> Result<usize, StoreError> {
        let end = now_ms.to_be_bytes();
        let mut n = 0;
        for entry in self.code_purge.range(..&end[..]) {
            let (k, _) = entry?;
            let code = digest_of(&k[8..]);
            let removed = tx_result(
                (&self.codes, &self.code_purge, &self.codes_by_user).transaction(
                    |(codes, purge, by_user)| {
                        // A user's revocation may have taken this entry since the scan.
                        if purge.remove(&k)?.is_none() {
                            return Ok(false);
                        }
                        // Exchanges leave a code's entry at its expiry, which keeps
                        // them cheap: a spent code is seen here then, and kept
                        // until its retention ends, for replay detection.
                        let record = codes
                            .get(&code[..])?
                            .and_then(|bytes| decode::<CodeRecord>(&bytes).ok());
                        if let Some(at) = record
                            .as_ref()
                            .and_then(|r| r.redeemed.as_ref())
                            .map(|r| r.at)
                        {
                            let keep_until = at.saturating_add(SPENT_CODE_RETENTION_MS);
                            if keep_until > now_ms {
                                purge.insert(purge_key(keep_until, &code), &[][..])?;
                                return Ok(false);
                            }
                        }
                        codes.remove(&code[..])?;
                        if let Some(record) = record {
                            by_user.remove(user_code_key(
                                record.user_id,
                                record.created_on,
                                &code,
                            ))?;
                        }
                        Ok(true)
                    },
                ),
            )?;
            if removed {
                n += 1;
            }
        }
        Ok(n)
    }

    fn key_in_memory(&self, key: &Digest) -> Option<Arc<KeyRecord>> {
        self.key_cache.get(key)
    }

    async fn key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if let Some(hit) = self.key_cache.get(key) {
            return Ok(Some(hit));
        }
        let started = std::time::Instant::now();
        let seen = self.key_cache.generation();
        let found: Option<Arc<KeyRecord>> = match live(self.keys.get(key)?) {
            Some(bytes) => Some(Arc::new(decode(&bytes)?)),
            None => None,
        };
        crate::telemetry::STORE_KEY_READ.observe(started.elapsed().as_secs_f64());
        if let Some(record) = &found {
            self.key_cache.fill(seen, *key, record.clone());
        }
        Ok(found)
    }

    async fn key_by_token_id(
        &self,
        token_id: &str,
    ) -> Result<Option<(Digest, Arc<KeyRecord>)>, StoreError> {
        let Some(hash) = self.key_ids.get(token_id.as_bytes())? else {
            return Ok(None);
        };
        let Ok(digest) = <Digest>::try_from(hash.as_ref()) else {
            return Err(StoreError::Corrupt("token ID index entry".into()));
        };
        Ok(self.key(&digest).await?.map(|r| (digest, r)))
    }

    async fn keys_of_user(&self, user_id: u64) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys_under(&self.keys_by_user, &user_prefix(user_id))
    }

    async fn key_count_of_user(&self, user_id: u64) -> Result<usize, StoreError> {
        let mut n = 0;
        for entry in self.keys_by_user.scan_prefix(user_prefix(user_id)) {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    async fn keys_of_client(&self, client_id: &str) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys_under(&self.keys_by_client, &client_prefix(client_id))
    }

    async fn insert_key(&self, key: &Digest, record: &KeyRecord) -> Result<KeyInsert, StoreError> {
        let outcome = {
            let _guard = self.creation.lock().await;
            let again = match &record.from_client {
                Some(client) => self
                    .keys_under(&self.keys_by_user, &user_prefix(record.user_id))?
                    .iter()
                    .any(|k| k.from_client.as_ref() == Some(client)),
                None => false,
            };
            let _shared = self.client_keys.read().await;
            tx_result(
                (
                    &self.clients,
                    &self.keys,
                    &self.key_ids,
                    &self.keys_by_client,
                    &self.keys_by_user,
                )
                    .transaction(
                        |(clients, keys, key_ids, keys_by_client, keys_by_user)| {
                            if let Some(client) = &record.from_client {
                                if live(clients.get(client.as_bytes())?).is_none() {
                                    return Ok(KeyInsert::NoSuchClient);
                                }
                            }
                            KeyTrees {
                                keys,
                                key_ids,
                                keys_by_client,
                                keys_by_user,
                            }
                            .insert(key, record)?;
                            Ok(if again {
                                KeyInsert::InsertedAgain
                            } else {
                                KeyInsert::Inserted
                            })
                        },
                    ),
            )?
        };
        if outcome != KeyInsert::NoSuchClient {
            self.commit.durable().await?;
        }
        Ok(outcome)
    }

    async fn revoke_key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let record = self.key(key).await?;
        let removed = record.is_some() && self.remove_keys(&[key.to_vec()])? > 0;
        // Even when another request removed it first: the caller may answer
        // "revoked", so wait until that removal is on disk too.
        self.commit.durable().await?;
        Ok(record.filter(|_| removed))
    }

    async fn revoke_user_keys(&self, user_id: u64) -> Result<usize, StoreError> {
        let removed = {
            // No key can be minted for the user while the scan runs.
            let _creation = self.creation.lock().await;
            let _exclusive = self.client_keys.write().await;
            // Unexchanged codes of the user would become keys later: they go too.
            for entry in self.codes.iter() {
                let (hash, value) = entry?;
                let record: CodeRecord = decode(&value)?;
                if record.user_id == user_id && record.redeemed.is_none() {
                    tx_result(
                        (&self.codes, &self.code_purge).transaction(|(codes, purge)| {
                            codes.remove(&hash)?;
                            purge.remove(purge_key(record.expires_at, &digest_of(&hash)))?;
                            Ok(())
                        }),
                    )?;
                }
            }
            let prefix = user_prefix(user_id);
            let mut hashes = Vec::new();
            for entry in self.keys_by_user.scan_prefix(prefix) {
                let (k, _) = entry?;
                hashes.push(k[prefix.len()..].to_vec());
            }
            self.remove_keys(&hashes)?
        };
        self.commit.durable().await?;
        Ok(removed)
    }

    async fn all_clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let mut out = Vec::new();
        for entry in self.clients.iter() {
            let (_, v) = entry?;
            if v.is_empty() {
                continue;
            }
            out.push(decode::<ClientRecord>(&v)?);
        }
        out.sort_by_key(|c| c.created_on);
        Ok(out)
    }

    async fn all_keys(&self) -> Result<Vec<(Digest, KeyRecord)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.keys.iter() {
            let (k, v) = entry?;
            if let Some(bytes) = live(Some(v)) {
                let Ok(digest) = Digest::try_from(k.as_ref()) else {
                    return Err(StoreError::Corrupt("key digest".into()));
                };
                out.push((digest, decode::<KeyRecord>(&bytes)?));
            }
        }
        out.sort_by_key(|(_, k)| k.created_on);
        Ok(out)
    }

    async fn import(
        &self,
        clients: &[ClientRecord],
        keys: &[(Digest, KeyRecord)],
    ) -> Result<ImportCounts, StoreError> {
        let mut counts = ImportCounts::default();
        {
            let _guard = self.creation.lock().await;
            for client in clients {
                let value = encode(client)?;
                let added = tx_result((&self.clients, &self.clients_by_user).transaction(
                    |(c, by_user)| {
                        if c.get(client.client_id.as_bytes())?.is_some() {
                            return Ok(false);
                        }
                        c.insert(client.client_id.as_bytes(), value.clone())?;
                        by_user.insert(
                            joined(&user_prefix(client.author), client.client_id.as_bytes()),
                            &[][..],
                        )?;
                        Ok(true)
                    },
                ))?;
                if added {
                    counts.clients_added += 1;
                } else {
                    counts.clients_present += 1;
                }
            }
            // Held against deletion as when minting: a client deleted
            // during the import takes its keys, imported ones included.
            let _shared = self.client_keys.read().await;
            for (hash, record) in keys {
                let client_held = match &record.from_client {
                    Some(c) => live(self.clients.get(c.as_bytes())?).is_some(),
                    None => true,
                };
                let outcome = tx_result(
                    (
                        &self.keys,
                        &self.key_ids,
                        &self.keys_by_client,
                        &self.keys_by_user,
                    )
                        .transaction(
                            |(k, key_ids, keys_by_client, keys_by_user)| {
                                if k.get(&hash[..])?.is_some() {
                                    return Ok(KeyImport::Present);
                                }
                                if !client_held {
                                    return Ok(KeyImport::Skipped);
                                }
                                KeyTrees {
                                    keys: k,
                                    key_ids,
                                    keys_by_client,
                                    keys_by_user,
                                }
                                .insert(hash, record)?;
                                Ok(KeyImport::Added)
                            },
                        ),
                )?;
                counts.count_key(outcome);
            }
        }
        self.commit.durable().await?;
        Ok(counts)
    }

    fn healthy(&self) -> Result<(), StoreError> {
        if self.commit.healthy() {
            Ok(())
        } else {
            Err(StoreError::Flush)
        }
    }

    fn close(&self) -> Result<(), StoreError> {
        self.exchanges.stop();
        self.commit.stop();
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::digest;
    use std::sync::Arc;

    pub(super) use crate::store::suite::code;
    use crate::store::suite::{client, key};

    fn open() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("s")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_second_open_of_the_same_store_says_it_is_locked() {
        let (dir, _store) = open();
        let e = SledStore::open(&dir.path().join("s")).err().unwrap();
        assert!(matches!(e, OpenError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("locked by another process"), "{e}");
    }

    // What the store promises is tested for every backend in `store::suite`;
    // these check what the sled backend keeps beside its records.

    #[tokio::test]
    async fn sweeping_leaves_no_purge_entry_behind() {
        let (_d, s) = open();
        s.insert_client(&client("CI1", 1), 10).await.unwrap();
        s.insert_code(&digest("old"), &code(1_000, None), usize::MAX)
            .await
            .unwrap();
        s.insert_code(&digest("spent"), &code(10_000, None), usize::MAX)
            .await
            .unwrap();
        s.redeem_code(&digest("spent"), &digest("k"), &key("CI1"), 500)
            .await
            .unwrap();
        s.sweep_codes(20_000).await.unwrap();
        assert_eq!(s.code_purge.len(), 1, "the spent code's, moved on");
        s.sweep_codes(500 + SPENT_CODE_RETENTION_MS + 1)
            .await
            .unwrap();
        assert!(s.code_purge.is_empty());
    }

    #[tokio::test]
    async fn deleting_a_client_removes_its_keys_index_entries() {
        let (_d, s) = open();
        s.insert_client(&client("CI1", 1), 10).await.unwrap();
        s.insert_client(&client("CI2", 1), 10).await.unwrap();
        for i in 0..5 {
            let c = digest(&format!("c{i}"));
            s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
                .await
                .unwrap();
            let owner = if i < 4 { "CI1" } else { "CI2" };
            s.redeem_code(&c, &digest(&format!("k{i}")), &key(owner), 1)
                .await
                .unwrap();
        }
        assert_eq!(s.delete_client("CI1").await.unwrap(), Some(4));
        let live_keys = s
            .keys
            .iter()
            .filter(|e| !e.as_ref().unwrap().1.is_empty())
            .count();
        assert_eq!(live_keys, 1);
        assert_eq!(s.key_ids.len(), 1);
        assert_eq!(s.keys_by_client.len(), 1);
        assert_eq!(s.keys_by_user.len(), 1);
        assert_eq!(s.clients_by_user.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_issued_exchange_is_answered_only_after_a_flush() {
        let (_d, s) = open();
        let s = Arc::new(s);
        s.insert_client(&client("CI1", 1), 10).await.unwrap();
        let exchange = |s: Arc<SledStore>, i: u32| async move {
            let c = digest(&format!("c{i}"));
            s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
                .await
                .unwrap();
            let before = s.flush_count();
            let k = digest(&format!("k{i}"));
            assert_eq!(
                s.redeem_code(&c, &k, &key("CI1"), 1).await.unwrap(),
                Redeem::Issued
            );
            assert!(
                s.flush_count() > before,
                "exchange {i} answered before a flush"
            );
        };
        // One at a time, then many at once (batched together).
        for i in 0..10 {
            exchange(s.clone(), i).await;
        }
        let wave: Vec<_> = (10..42)
            .map(|i| tokio::spawn(exchange(s.clone(), i)))
            .collect();
        for t in wave {
            t.await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_flushes() {
        let (_d, s) = open();
        let s = Arc::new(s);
        let before = s.flush_count();
        let writers = 64;
        let tasks: Vec<_> = (0..writers)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    s.insert_code(&digest(&format!("c{i}")), &code(u64::MAX, None), usize::MAX)
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let flushes = s.flush_count() - before;
        assert!(flushes >= 1);
        assert!(flushes < writers, "{flushes} flushes for {writers} writers");
    }
}
