//! The [`Store`] contract, as one suite of tests that runs against every
//! backend: each test is written once, against `Arc<dyn Store>`, and
//! instantiated per backend by `contract!` at the bottom. A backend's own
//! internals (sled's index trees, its group commit) are tested beside it.
//!
//! The PostgreSQL tests reach the server named by
//! `TACHI_GATE_TEST_POSTGRES_URL` (default: the local one, user `postgres`,
//! database `test`), each in a schema of its own that is dropped after.

use std::sync::Arc;

use super::{
    digest, digest_hex, random_hex, ClientInsert, ClientRecord, CodeRecord, KeyInsert, KeyRecord,
    Redeem, Store,
};

pub(crate) fn client(id: &str, author: u64) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        secret_hash: digest_hex("secret"),
        name: "App".into(),
        author,
        requested_permissions: vec!["submit_score".into()],
        redirect_uri: None,
        webhook_uri: None,
        api_key_template: None,
        api_key_filename: None,
        created_on: 1,
        public: false,
    }
}

/// A fresh code of user 1.
pub(crate) fn code(expires_at: u64, client_id: Option<&str>) -> CodeRecord {
    CodeRecord {
        user_id: 1,
        created_on: 0,
        expires_at,
        client_id: client_id.map(String::from),
        challenge: None,
        redeemed: None,
        authorization: None,
    }
}

pub(crate) fn key(client_id: &str) -> KeyRecord {
    KeyRecord {
        token_id: random_hex(12),
        user_id: 1,
        identifier: "App Token".into(),
        permissions: vec!["submit_score".into()],
        from_client: Some(client_id.into()),
        created_on: 0,
        memo: Default::default(),
    }
}

type S = Arc<dyn Store>;

async fn client_cap_counts_only_the_author(s: S) {
    assert_eq!(
        s.insert_client(&client("CI1", 1), 1).await.unwrap(),
        ClientInsert::Inserted
    );
    assert_eq!(
        s.insert_client(&client("CI2", 1), 1).await.unwrap(),
        ClientInsert::CapReached
    );
    assert_eq!(
        s.insert_client(&client("CI3", 2), 1).await.unwrap(),
        ClientInsert::Inserted
    );
    assert_eq!(s.clients_of(1).await.unwrap().len(), 1);
    assert!(s.client("CI2").await.unwrap().is_none());
}

async fn the_client_cap_holds_under_concurrent_creates(s: S) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.insert_client(&client(&format!("CI{i}"), 9), 5).await })
        })
        .collect();
    let mut inserted = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == ClientInsert::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 5);
    assert_eq!(s.clients_of(9).await.unwrap().len(), 5);
}

async fn redeeming_spends_the_code_once_and_stores_the_key(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let c = digest("code");
    s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
        .await
        .unwrap();
    let (k1, k2) = (digest("key1"), digest("key2"));
    assert_eq!(
        s.redeem_code(&c, &k1, &key("CI1"), 5).await.unwrap(),
        Redeem::Issued
    );
    assert_eq!(
        s.redeem_code(&c, &k2, &key("CI1"), 5).await.unwrap(),
        Redeem::Lost
    );
    assert!(s.key(&k1).await.unwrap().is_some());
    assert!(s.key(&k2).await.unwrap().is_none());
    let spent = s.code(&c).await.unwrap().unwrap();
    assert_eq!(spent.redeemed.unwrap().key_hash, hex::encode(k1));
    assert_eq!(s.revoke_code_keys(&c).await.unwrap(), 1);
    assert!(s.key(&k1).await.unwrap().is_none());
    assert_eq!(s.revoke_code_keys(&c).await.unwrap(), 0);
}

async fn of_concurrent_exchanges_of_one_code_exactly_one_wins(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    for round in 0..3 {
        let c = digest(&format!("code{round}"));
        s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                let k = digest(&format!("k{round}-{i}"));
                tokio::spawn(async move { s.redeem_code(&c, &k, &key("CI1"), 5).await })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() == Redeem::Issued {
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    assert_eq!(s.keys_of_client("CI1").await.unwrap().len(), 3);
}

async fn expired_codes_and_deleted_clients_cannot_be_redeemed(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let c = digest("code");
    s.insert_code(&c, &code(100, None), usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        s.redeem_code(&c, &digest("k"), &key("CI1"), 100)
            .await
            .unwrap(),
        Redeem::Lost
    );
    let c2 = digest("code2");
    s.insert_code(&c2, &code(u64::MAX, None), usize::MAX)
        .await
        .unwrap();
    assert_eq!(s.delete_client("CI1").await.unwrap(), Some(0));
    assert_eq!(
        s.redeem_code(&c2, &digest("k"), &key("CI1"), 1)
            .await
            .unwrap(),
        Redeem::Lost
    );
}

async fn a_user_keeps_at_most_the_newest_live_codes(s: S) {
    for i in 0..4u64 {
        let mut r = code(u64::MAX, None);
        r.created_on = i;
        let evicted = s
            .insert_code(&digest(&format!("c{i}")), &r, 2)
            .await
            .unwrap();
        assert_eq!(evicted, usize::from(i >= 2), "code {i}");
    }
    assert!(s.code(&digest("c0")).await.unwrap().is_none());
    assert!(s.code(&digest("c1")).await.unwrap().is_none());
    assert!(s.code(&digest("c3")).await.unwrap().is_some());
}

async fn sweeping_removes_expired_codes_and_spent_ones_after_retention(s: S) {
    use super::sled_store::SPENT_CODE_RETENTION_MS;
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let (old, fresh, spent) = (digest("old"), digest("fresh"), digest("spent"));
    s.insert_code(&old, &code(1_000, None), usize::MAX)
        .await
        .unwrap();
    s.insert_code(&fresh, &code(10_000, None), usize::MAX)
        .await
        .unwrap();
    s.insert_code(&spent, &code(10_000, None), usize::MAX)
        .await
        .unwrap();
    s.redeem_code(&spent, &digest("k"), &key("CI1"), 500)
        .await
        .unwrap();
    assert_eq!(s.sweep_codes(5_000).await.unwrap(), 1);
    assert!(s.code(&old).await.unwrap().is_none());
    assert!(s.code(&fresh).await.unwrap().is_some());
    assert!(
        s.code(&spent).await.unwrap().is_some(),
        "kept for replay detection"
    );
    assert_eq!(s.sweep_codes(20_000).await.unwrap(), 1);
    assert!(s.code(&fresh).await.unwrap().is_none());
    assert!(s.code(&spent).await.unwrap().is_some());
    assert_eq!(
        s.sweep_codes(500 + SPENT_CODE_RETENTION_MS + 1)
            .await
            .unwrap(),
        1
    );
    assert!(s.code(&spent).await.unwrap().is_none());
}

async fn deleting_a_client_removes_its_keys(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    s.insert_client(&client("CI2", 1), 10).await.unwrap();
    let mut mine = Vec::new();
    for i in 0..5 {
        let c = digest(&format!("c{i}"));
        s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
            .await
            .unwrap();
        let k = digest(&format!("k{i}"));
        let owner = if i < 4 { "CI1" } else { "CI2" };
        s.redeem_code(&c, &k, &key(owner), 1).await.unwrap();
        mine.push(k);
    }
    assert_eq!(s.delete_client("CI1").await.unwrap(), Some(4));
    for k in &mine[..4] {
        assert!(s.key(k).await.unwrap().is_none());
    }
    assert!(s.key(&mine[4]).await.unwrap().is_some());
    assert_eq!(s.keys_of_user(1).await.unwrap().len(), 1);
    assert_eq!(s.key_count_of_user(1).await.unwrap(), 1);
    assert!(s.keys_of_client("CI1").await.unwrap().is_empty());
    assert_eq!(s.clients_of(1).await.unwrap().len(), 1);
    assert_eq!(s.all_keys().await.unwrap().len(), 1);
    assert_eq!(s.delete_client("CI1").await.unwrap(), None);
}

/// Keys minted while their client is deleted: each is either refused or
/// removed with the client, never left behind.
async fn no_key_outlives_its_client_when_minted_concurrently(s: S) {
    for round in 0..5 {
        let id = format!("CI{round}");
        s.insert_client(&client(&id, 1), 100).await.unwrap();
        let minting: Vec<_> = (0..12)
            .map(|i| {
                let (s, id) = (s.clone(), id.clone());
                tokio::spawn(async move {
                    let k = digest(&format!("{id}-{i}"));
                    (k, s.insert_key(&k, &key(&id)).await.unwrap())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let deleted = s.delete_client(&id).await.unwrap();
        assert!(deleted.is_some(), "round {round}");
        for t in minting {
            let (k, outcome) = t.await.unwrap();
            if outcome != KeyInsert::NoSuchClient {
                assert!(
                    s.key(&k).await.unwrap().is_none(),
                    "round {round}: a key minted as its client went outlives it"
                );
            }
        }
        assert!(
            s.keys_of_client(&id).await.unwrap().is_empty(),
            "round {round}"
        );
    }
}

async fn keys_are_found_by_token_id_and_counted_per_client(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let first = key("CI1");
    assert_eq!(
        s.insert_key(&digest("a"), &first).await.unwrap(),
        KeyInsert::Inserted
    );
    assert_eq!(
        s.insert_key(&digest("b"), &key("CI1")).await.unwrap(),
        KeyInsert::InsertedAgain
    );
    assert_eq!(
        s.insert_key(&digest("c"), &key("CInone")).await.unwrap(),
        KeyInsert::NoSuchClient
    );
    let (d, r) = s.key_by_token_id(&first.token_id).await.unwrap().unwrap();
    assert_eq!((d, &*r), (digest("a"), &first));
    assert!(s.key_by_token_id("nope").await.unwrap().is_none());
    let revoked = s.revoke_key(&digest("a")).await.unwrap().unwrap();
    assert_eq!(*revoked, first);
    assert!(s.revoke_key(&digest("a")).await.unwrap().is_none());
    assert!(s.key_by_token_id(&first.token_id).await.unwrap().is_none());
}

async fn revoking_a_user_takes_their_keys_and_unspent_codes(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let (spent, unspent) = (digest("spent"), digest("unspent"));
    for c in [&spent, &unspent] {
        s.insert_code(c, &code(u64::MAX, None), usize::MAX)
            .await
            .unwrap();
    }
    s.redeem_code(&spent, &digest("k"), &key("CI1"), 1)
        .await
        .unwrap();
    let mut other = key("CI1");
    other.user_id = 2;
    s.insert_key(&digest("other"), &other).await.unwrap();
    assert_eq!(s.revoke_user_keys(1).await.unwrap(), 1);
    assert!(s.key(&digest("k")).await.unwrap().is_none());
    assert!(s.code(&unspent).await.unwrap().is_none());
    assert!(s.code(&spent).await.unwrap().is_some(), "kept for replays");
    assert!(s.key(&digest("other")).await.unwrap().is_some());
}

async fn importing_again_never_brings_back_what_was_revoked_or_deleted(s: S) {
    let c = client("CI1", 1);
    let k = (digest("imported-key"), key("CI1"));
    let other = (digest("other-key"), key("CI2"));
    let batch_clients = vec![c.clone(), client("CI2", 1)];
    let batch_keys = vec![k.clone(), other.clone()];
    let first = s.import(&batch_clients, &batch_keys).await.unwrap();
    assert_eq!((first.clients_added, first.keys_added), (2, 2));
    assert!(s.revoke_key(&k.0).await.unwrap().is_some());
    assert_eq!(s.delete_client("CI2").await.unwrap(), Some(1));
    let again = s.import(&batch_clients, &batch_keys).await.unwrap();
    assert_eq!((again.clients_added, again.keys_added), (0, 0));
    assert_eq!((again.clients_present, again.keys_present), (2, 2));
    assert!(s.key(&k.0).await.unwrap().is_none());
    assert!(s.key(&other.0).await.unwrap().is_none());
    assert!(s.client("CI2").await.unwrap().is_none());
    assert_eq!(s.all_clients().await.unwrap().len(), 1);
}

/// A key naming a client the store does not hold (never imported, or
/// deleted, even while the import runs) is skipped, never left without it.
async fn importing_a_key_whose_client_is_not_held_skips_it(s: S) {
    let (lost, late, kept, own) = (
        (digest("lost"), key("CInever")),
        (digest("late"), key("CIgone")),
        (digest("kept"), key("CIheld")),
        (
            digest("own"),
            KeyRecord {
                from_client: None,
                ..key("x")
            },
        ),
    );
    s.insert_client(&client("CIgone", 1), 10).await.unwrap();
    s.insert_client(&client("CIheld", 1), 10).await.unwrap();
    s.delete_client("CIgone").await.unwrap();
    let counts = s
        .import(
            &[],
            &[lost.clone(), late.clone(), kept.clone(), own.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        (counts.keys_added, counts.keys_present, counts.keys_skipped),
        (2, 0, 2)
    );
    assert!(
        counts.summary().contains("2 skipped"),
        "{}",
        counts.summary()
    );
    for (k, _) in [&lost, &late] {
        assert!(s.key(k).await.unwrap().is_none());
    }
    for (k, _) in [&kept, &own] {
        assert!(s.key(k).await.unwrap().is_some());
    }
    // A client deleted while its keys are imported takes every one.
    for round in 0..5 {
        let id = format!("CIrace{round}");
        s.insert_client(&client(&id, 1), 100).await.unwrap();
        let batch: Vec<_> = (0..40)
            .map(|i| (digest(&format!("{id}-{i}")), key(&id)))
            .collect();
        let importing = {
            let (s, batch) = (s.clone(), batch.clone());
            tokio::spawn(async move {
                for one in batch.chunks(4) {
                    s.import(&[], one).await.unwrap();
                }
            })
        };
        tokio::task::yield_now().await;
        s.delete_client(&id).await.unwrap();
        importing.await.unwrap();
        for (k, _) in &batch {
            assert!(s.key(k).await.unwrap().is_none(), "round {round}");
        }
    }
}

async fn concurrent_client_changes_never_undo_each_other(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.modify_client("CI1", &|c| c.name.push('x')).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    let c = s.client("CI1").await.unwrap().unwrap();
    assert_eq!(c.name, format!("App{}", "x".repeat(20)));
    // The ID and author cannot be changed through it.
    let after = s
        .modify_client("CI1", &|c| {
            c.author = 99;
            c.client_id = "CIother".into();
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.author, after.client_id.as_str()), (1, "CI1"));
    assert!(s.modify_client("CInope", &|_| {}).await.unwrap().is_none());
}

async fn a_key_read_before_it_is_removed_is_not_served_after(s: S) {
    s.insert_client(&client("CI1", 1), 10).await.unwrap();
    let minted = |i: u32| {
        let k = digest(&format!("k{i}"));
        let mut r = key("CI1");
        r.user_id = if i == 2 { 7 } else { 1 };
        (k, r)
    };
    let mut keys = Vec::new();
    for i in 0..4 {
        let c = digest(&format!("c{i}"));
        s.insert_code(&c, &code(u64::MAX, None), usize::MAX)
            .await
            .unwrap();
        let (k, r) = minted(i);
        assert_eq!(s.redeem_code(&c, &k, &r, 1).await.unwrap(), Redeem::Issued);
        keys.push(k);
    }
    // Every way a key is removed, each after the key has just been read
    // (and so is held in memory).
    let removals: [(usize, &str); 4] = [
        (0, "revoke_key"),
        (1, "revoke_code_keys"),
        (2, "revoke_user_keys"),
        (3, "delete_client"),
    ];
    for (i, how) in removals {
        for k in &keys[i..] {
            assert!(
                s.key(k).await.unwrap().is_some(),
                "{how}: key {i} not live yet"
            );
            assert!(s.key_in_memory(k).is_some(), "{how}: key {i} not held");
        }
        match how {
            "revoke_key" => assert!(s.revoke_key(&keys[i]).await.unwrap().is_some()),
            "revoke_code_keys" => {
                assert_eq!(s.revoke_code_keys(&digest("c1")).await.unwrap(), 1)
            }
            "revoke_user_keys" => assert_eq!(s.revoke_user_keys(7).await.unwrap(), 1),
            _ => assert_eq!(s.delete_client("CI1").await.unwrap(), Some(1)),
        }
        assert!(
            s.key_in_memory(&keys[i]).is_none(),
            "{how} left the key in memory"
        );
        assert!(
            s.key(&keys[i]).await.unwrap().is_none(),
            "{how} left the key usable"
        );
        // The keys it did not remove are still held.
        for (j, k) in keys.iter().enumerate().skip(i + 1) {
            assert!(s.key_in_memory(k).is_some(), "{how} dropped key {j}");
        }
    }
}

/// A fresh sled store in a temporary directory.
pub(crate) struct SledFixture {
    _dir: tempfile::TempDir,
    pub(crate) store: S,
}

impl SledFixture {
    pub(crate) fn open() -> SledFixture {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SledStore::open(&dir.path().join("s")).unwrap();
        SledFixture {
            _dir: dir,
            store: Arc::new(store),
        }
    }
}

/// A PostgreSQL store in a schema of its own, dropped with the fixture.
pub(crate) struct PgFixture {
    pub(crate) schema: String,
    pub(crate) url: String,
    pub(crate) store: S,
}

/// The server the PostgreSQL tests use.
pub(crate) fn test_postgres_url() -> String {
    std::env::var("TACHI_GATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs one SQL batch on the test server, on a thread of its own (callers
/// may be inside a runtime, or dropping something inside one).
fn admin_sql(sql: String) {
    let url = test_postgres_url();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("the test PostgreSQL server (TACHI_GATE_TEST_POSTGRES_URL) answers");
            tokio::spawn(connection);
            client.batch_execute(&sql).await.unwrap();
        });
    })
    .join()
    .unwrap();
}

/// Server settings that a database or role may carry (`ALTER DATABASE …
/// SET`), given per connection here so that no other test sees them:
/// transactions that default to `repeatable read`.
pub(crate) const REPEATABLE_READ_DEFAULT: &str =
    "%20-c%20default_transaction_isolation%3Drepeatable%5C%20read";

impl PgFixture {
    pub(crate) fn open() -> PgFixture {
        PgFixture::open_with_settings("")
    }

    /// A store whose connections start with `settings` (URL-encoded
    /// `options` text, each part beginning with `%20-c`) as the server's
    /// defaults.
    pub(crate) fn open_with_settings(settings: &str) -> PgFixture {
        let schema = format!("tg_unit_{}", random_hex(6));
        admin_sql(format!("CREATE SCHEMA {schema}"));
        let base = test_postgres_url();
        let joiner = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{joiner}options=-c%20search_path%3D{schema}{settings}");
        let config = crate::config::PostgresConfig {
            url: url.clone(),
            pool_size: 8,
            timeout: std::time::Duration::from_secs(5),
        };
        let store = super::PgStore::open(&config).unwrap();
        PgFixture {
            schema,
            url,
            store: Arc::new(store),
        }
    }
}

impl Drop for PgFixture {
    fn drop(&mut self) {
        let _ = self.store.close();
        admin_sql(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

/// Instantiates each named test once per backend.
macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let f = super::SledFixture::open();
                    super::$test(f.store.clone()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let f = super::PgFixture::open();
                    super::$test(f.store.clone()).await;
                }
            )*
        }
        /// The same, on a server whose transactions default to
        /// `repeatable read`: the store's guarantees must not depend on it.
        mod on_postgres_defaulting_to_repeatable_read {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let f = super::PgFixture::open_with_settings(super::REPEATABLE_READ_DEFAULT);
                    super::$test(f.store.clone()).await;
                }
            )*
        }
    };
}

contract!(
    client_cap_counts_only_the_author,
    the_client_cap_holds_under_concurrent_creates,
    redeeming_spends_the_code_once_and_stores_the_key,
    of_concurrent_exchanges_of_one_code_exactly_one_wins,
    expired_codes_and_deleted_clients_cannot_be_redeemed,
    a_user_keeps_at_most_the_newest_live_codes,
    sweeping_removes_expired_codes_and_spent_ones_after_retention,
    deleting_a_client_removes_its_keys,
    no_key_outlives_its_client_when_minted_concurrently,
    keys_are_found_by_token_id_and_counted_per_client,
    revoking_a_user_takes_their_keys_and_unspent_codes,
    importing_again_never_brings_back_what_was_revoked_or_deleted,
    importing_a_key_whose_client_is_not_held_skips_it,
    concurrent_client_changes_never_undo_each_other,
    a_key_read_before_it_is_removed_is_not_served_after,
);
