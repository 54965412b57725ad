//! The gate's persistent state: API clients, intermediate codes and API keys.
//!
//! Routes talk to the [`Store`] trait only. Two backends implement it: the
//! embedded [`SledStore`] (the default, held by one process) and
//! [`PgStore`], a PostgreSQL database that several gates share, with the
//! same guarantees kept by the database.
//!
//! Every secret (client secret, code, key) is kept as its SHA-256 [`Digest`]:
//! they are 160-bit random values, so a plain hash is enough to make a stolen
//! store useless, and lookups stay a single B-tree probe. Every mutating method
//! returns only once its change is durable on disk.
//!
//! The tests of the [`Store`] contract are one suite (`suite`) that runs
//! against each backend.

mod batch;
mod commit;
mod key_cache;
pub mod postgres;
mod records;
mod sled_store;
#[cfg(test)]
mod suite;

pub use commit::GroupCommit;
pub use postgres::{PgOpenError, PgStore};
pub use records::{
    Authorization, Challenge, ClientRecord, CodeRecord, KeyRecord, Memo, Memoized, MintedKey,
    PkceMethod, Redemption,
};
pub use sled_store::{key_index_entries, OpenError, SledStore};

use std::sync::Arc;

use async_trait::async_trait;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a secret; what the store keeps instead of the secret.
pub type Digest = [u8; 32];

/// Hashes a client secret, code or key for storage and lookup.
pub fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

/// The digest of `secret` as stored in a record (hex), e.g. a client's secret hash.
pub fn digest_hex(secret: &str) -> String {
    hex::encode(digest(secret))
}

/// A digest back from its stored hex form; `None` unless exactly 32 bytes of hex.
pub fn digest_from_hex(hex_text: &str) -> Option<Digest> {
    hex::decode(hex_text).ok()?.try_into().ok()
}

/// Compares two digests in constant time, so response timing says nothing
/// about how much of a guessed secret was right.
pub fn digests_match(a: &Digest, b: &Digest) -> bool {
    a.ct_eq(b).into()
}

/// `n` bytes from a CSPRNG (the thread-local ChaCha generator, seeded by the OS), hex-encoded (Tachi's `Random20Hex` is `n = 20`).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Milliseconds since the Unix epoch, Tachi's time unit.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A failure of the store itself (disk, corruption, shutting down); never
/// the caller's fault. Cloned to every request of a batch that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database engine failed (I/O, or its own corruption checks).
    #[error("store error: {0}")]
    Db(#[from] sled::Error),
    /// A record could not be encoded (unreachable for the records kept).
    #[error("store error: cannot encode a record: {0}")]
    Encode(String),
    /// A stored record or index entry is not what the gate wrote.
    #[error("store error: corrupt {0}")]
    Corrupt(String),
    /// Syncing to disk failed: nothing since the last good sync is acknowledged.
    #[error("store error: flushing the store to disk failed")]
    Flush,
    /// The store is shutting down and takes no more changes.
    #[error("store error: the store is closing")]
    Closing,
    /// One of the store's own threads (named) has stopped or failed.
    #[error("store error: the store {0} has stopped")]
    Stopped(&'static str),
    /// The writer could not apply the batch this change was in.
    #[error("store error: the store writer failed on this batch")]
    BatchFailed,
    /// The database cannot be reached, or did not answer in time; nothing
    /// was acknowledged.
    #[error("store error: the database is unavailable: {0}")]
    Unavailable(String),
    /// The database refused a statement.
    #[error("store error: the database failed: {0}")]
    Database(String),
}

/// A change to a client record, for [`Store::modify_client`].
pub type ClientChange<'a> = dyn Fn(&mut ClientRecord) + Send + Sync + 'a;

/// The outcome of [`Store::insert_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInsert {
    Inserted,
    /// The author already has `cap` clients.
    CapReached,
}

/// The outcome of [`Store::redeem_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redeem {
    /// The code was fresh; it is now spent and the key exists.
    Issued,
    /// Another exchange won, the code expired, or the client is gone.
    Lost,
}

/// The outcome of [`Store::insert_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInsert {
    Inserted,
    /// Inserted beside a key the user already has from this client (which
    /// keeps working).
    InsertedAgain,
    /// The key names a client that does not exist.
    NoSuchClient,
}

/// What an import changed (in answers as `clientsAdded`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCounts {
    pub clients_added: usize,
    pub clients_present: usize,
    pub keys_added: usize,
    pub keys_present: usize,
    /// Keys not held that name a client the store does not hold (never
    /// imported, or deleted): added, they would outlive their client.
    /// Left out of answers when 0, as before it was counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub keys_skipped: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What became of one imported key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyImport {
    Added,
    /// The digest is held (live or revoked).
    Present,
    /// Its client is not held.
    Skipped,
}

impl ImportCounts {
    /// The one-line account of an import.
    pub fn summary(&self) -> String {
        format!(
            "Imported {} clients ({} already present) and {} keys ({} already present{}).",
            self.clients_added,
            self.clients_present,
            self.keys_added,
            self.keys_present,
            self.skipped_note()
        )
    }

    /// How many keys were skipped, as a clause of a summary; empty for none.
    pub fn skipped_note(&self) -> String {
        match self.keys_skipped {
            0 => String::new(),
            n => format!(", {n} skipped: their client is not held"),
        }
    }

    pub(crate) fn count_key(&mut self, outcome: KeyImport) {
        match outcome {
            KeyImport::Added => self.keys_added += 1,
            KeyImport::Present => self.keys_present += 1,
            KeyImport::Skipped => self.keys_skipped += 1,
        }
    }
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, o: ImportCounts) {
        self.clients_added += o.clients_added;
        self.clients_present += o.clients_present;
        self.keys_added += o.keys_added;
        self.keys_present += o.keys_present;
        self.keys_skipped += o.keys_skipped;
    }
}

/// The gate's persistent state. Mutating methods return once the change is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new client unless its author already has `cap` clients.
    async fn insert_client(
        &self,
        client: &ClientRecord,
        cap: usize,
    ) -> Result<ClientInsert, StoreError>;
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// The clients `user_id` created, oldest first.
    async fn clients_of(&self, user_id: u64) -> Result<Vec<ClientRecord>, StoreError>;
    /// Changes a client atomically (concurrent changes never undo each other);
    /// the new record, or `None` when the client no longer exists. `change`
    /// may run more than once and cannot alter the client ID or author.
    async fn modify_client(
        &self,
        client_id: &str,
        change: &ClientChange<'_>,
    ) -> Result<Option<ClientRecord>, StoreError>;
    /// Deletes a client and every key issued through it; the number of keys
    /// removed, or `None` when there was no such client.
    async fn delete_client(&self, client_id: &str) -> Result<Option<usize>, StoreError>;

    /// Stores a new code, keeping at most `keep` live (unspent, unexpired)
    /// codes of its user: older ones beyond that are removed, oldest first,
    /// so abandoned authorisations cannot pile up. How many were removed.
    async fn insert_code(
        &self,
        code: &Digest,
        record: &CodeRecord,
        keep: usize,
    ) -> Result<usize, StoreError>;
    /// The code's record as stored, spent or not, until it is swept.
    async fn code(&self, code: &Digest) -> Result<Option<CodeRecord>, StoreError>;
    /// Atomically spends a fresh code and stores the key minted from it. Exactly
    /// one of many concurrent calls for the same code returns [`Redeem::Issued`].
    async fn redeem_code(
        &self,
        code: &Digest,
        key: &Digest,
        record: &KeyRecord,
        now_ms: u64,
    ) -> Result<Redeem, StoreError>;
    /// Revokes the key issued from a spent code (RFC 6749 §4.1.2); how many were revoked.
    async fn revoke_code_keys(&self, code: &Digest) -> Result<usize, StoreError>;
    /// Removes codes whose time is up; how many.
    async fn sweep_codes(&self, now_ms: u64) -> Result<usize, StoreError>;

    /// The key with this digest, if it exists (revoked keys do not). Shared,
    /// not copied: a backend may hand out the record it holds in memory.
    async fn key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError>;
    /// The key with this digest if the backend holds its record in memory,
    /// as [`Store::key`] would answer it; `None` says only that it does not
    /// (ask [`Store::key`]). Synchronous, for the request path: a call of an
    /// async trait method allocates its future.
    fn key_in_memory(&self, _key: &Digest) -> Option<Arc<KeyRecord>> {
        None
    }
    /// The key with this non-secret token ID, with its digest.
    async fn key_by_token_id(
        &self,
        token_id: &str,
    ) -> Result<Option<(Digest, Arc<KeyRecord>)>, StoreError>;
    /// A user's keys, oldest first.
    async fn keys_of_user(&self, user_id: u64) -> Result<Vec<KeyRecord>, StoreError>;
    /// How many keys a user holds.
    async fn key_count_of_user(&self, user_id: u64) -> Result<usize, StoreError> {
        Ok(self.keys_of_user(user_id).await?.len())
    }
    /// The keys issued through a client, oldest first.
    async fn keys_of_client(&self, client_id: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// Stores a new key; says whether the user already had one from its client.
    async fn insert_key(&self, key: &Digest, record: &KeyRecord) -> Result<KeyInsert, StoreError>;
    /// Revokes (deletes) a key; its record if it existed.
    async fn revoke_key(&self, key: &Digest) -> Result<Option<Arc<KeyRecord>>, StoreError>;
    /// Revokes every key of a user; how many.
    async fn revoke_user_keys(&self, user_id: u64) -> Result<usize, StoreError>;
    /// Every client, oldest first.
    async fn all_clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Every live key with its digest, oldest first (to copy a store).
    async fn all_keys(&self) -> Result<Vec<(Digest, KeyRecord)>, StoreError>;
    /// Adds clients and keys that are not there yet (by client ID and key
    /// digest), leaving existing ones untouched, so importing twice is
    /// harmless. A key that names a client is added only while that client
    /// is held, under the same exclusion as minting, so that no key
    /// outlives its client; otherwise it is counted as skipped.
    async fn import(
        &self,
        clients: &[ClientRecord],
        keys: &[(Digest, KeyRecord)],
    ) -> Result<ImportCounts, StoreError>;

    /// Whether the store can make writes durable right now.
    fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Makes everything written so far durable and releases the store.
    fn close(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_only_equal_inputs() {
        assert!(digests_match(&digest("a"), &digest("a")));
        assert!(!digests_match(&digest("a"), &digest("b")));
    }

    #[test]
    fn random_hex_has_the_asked_length_and_varies() {
        let a = random_hex(20);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(20));
    }
}
