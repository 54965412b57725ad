//! Token exchanges in the sled store: spending codes and storing the keys
//! minted from them, many exchanges to a transaction.
//!
//! Exchanges go through a [`Batcher`], whose thread applies every exchange
//! queued meanwhile in one sled transaction and takes one group-commit
//! ticket for all of them (see `store::batch` for why). Inside the
//! transaction each exchange sees the ones before it, so a code presented
//! twice in one batch is issued once, exactly as if the two came in turn.
//!
//! Once queued, an exchange is applied even if its caller stops waiting (the
//! client hung up): its code is then spent without an answer, and a retry
//! counts as a replay, which revokes the key. That fails closed. Freshness is
//! judged at the time the caller read the clock, before queuing; the queue
//! is unbounded, but drained far faster than a code's lifetime.

use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionalTree};
use sled::Transactional;

use super::{decode, encode, live, tx_result, KeyTrees};
use crate::store::batch::Batcher;
use crate::store::commit::Ticket;
use crate::store::{CodeRecord, Digest, GroupCommit, KeyRecord, Redeem, Redemption, StoreError};

/// The most exchanges in one transaction: bounds its write set and how long
/// it holds sled's write lock.
const MAX_BATCH: usize = 64;

/// One exchange: spend `code` and store `record` under the digest `key`.
pub(super) struct Exchange {
    pub code: Digest,
    pub key: Digest,
    pub record: KeyRecord,
    pub now_ms: u64,
}

/// An exchange's outcome, and for an issued key the ticket that makes it durable.
pub(super) type Applied = (Redeem, Option<Ticket>);

/// The exchange writer: its queue and thread.
pub(super) type Exchanges = Batcher<Exchange, Applied>;

/// The trees one exchange touches.
pub(super) struct ExchangeTrees {
    pub clients: sled::Tree,
    pub codes: sled::Tree,
    pub keys: sled::Tree,
    pub key_ids: sled::Tree,
    pub keys_by_client: sled::Tree,
    pub keys_by_user: sled::Tree,
}

/// Starts the exchange writer. It holds `client_keys` shared while it
/// writes, so that no key is minted for a client being deleted.
pub(super) fn start(
    trees: ExchangeTrees,
    client_keys: Arc<tokio::sync::RwLock<()>>,
    commit: Arc<GroupCommit>,
) -> std::io::Result<Exchanges> {
    Batcher::start("store-exchanges", MAX_BATCH, move |batch: &[Exchange]| {
        let outcomes = {
            let _shared = client_keys.blocking_read();
            trees.apply(batch)?
        };
        let issued = outcomes.iter().any(|o| matches!(o, Ok(Redeem::Issued)));
        // Should no ticket be had (the store is closing), only the issued
        // exchanges fail: their keys cannot be promised durable.
        let ticket = if issued {
            commit.ticket().map(Some)
        } else {
            Ok(None)
        };
        Ok(outcomes
            .into_iter()
            .map(|o| match o? {
                Redeem::Issued => match &ticket {
                    Ok(t) => Ok((Redeem::Issued, *t)),
                    Err(e) => Err(e.clone()),
                },
                Redeem::Lost => Ok((Redeem::Lost, None)),
            })
            .collect())
    })
}

impl ExchangeTrees {
    /// Applies `batch` in one transaction; an outcome per exchange. A corrupt
    /// code record fails its own exchange only.
    fn apply(&self, batch: &[Exchange]) -> Result<Vec<Result<Redeem, StoreError>>, StoreError> {
        tx_result(
            (
                &self.clients,
                &self.codes,
                &self.keys,
                &self.key_ids,
                &self.keys_by_client,
                &self.keys_by_user,
            )
                .transaction(
                    |(clients, codes, keys, key_ids, keys_by_client, keys_by_user)| {
                        let key_trees = KeyTrees {
                            keys,
                            key_ids,
                            keys_by_client,
                            keys_by_user,
                        };
                        batch
                            .iter()
                            .map(|x| redeem(clients, codes, &key_trees, x))
                            .collect()
                    },
                ),
        )
    }
}

/// One exchange inside the batch's transaction.
fn redeem(
    clients: &TransactionalTree,
    codes: &TransactionalTree,
    key_trees: &KeyTrees<'_>,
    x: &Exchange,
) -> Result<Result<Redeem, StoreError>, ConflictableTransactionError<StoreError>> {
    let Some(bytes) = codes.get(&x.code[..])? else {
        return Ok(Ok(Redeem::Lost));
    };
    let mut code_record: CodeRecord = match decode(&bytes) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let client_id = x.record.from_client.clone().unwrap_or_default();
    if !code_record.is_fresh(x.now_ms) || live(clients.get(client_id.as_bytes())?).is_none() {
        return Ok(Ok(Redeem::Lost));
    }
    code_record.redeemed = Some(Redemption {
        key_hash: hex::encode(x.key),
        client_id,
        at: x.now_ms,
    });
    let code_value = match encode(&code_record) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    // The code's sweep entry stays at its expiry: the sweep then keeps a
    // spent code for its retention time, off this path.
    codes.insert(&x.code[..], code_value)?;
    key_trees.insert(&x.key, &x.record)?;
    Ok(Ok(Redeem::Issued))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::digest;

    fn trees() -> ExchangeTrees {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let t = |n: &str| db.open_tree(n).unwrap();
        ExchangeTrees {
            clients: t("clients"),
            codes: t("codes"),
            keys: t("keys"),
            key_ids: t("key_ids"),
            keys_by_client: t("keys_by_client"),
            keys_by_user: t("keys_by_user"),
        }
    }

    fn exchange(code: &str, key: &str) -> Exchange {
        Exchange {
            code: digest(code),
            key: digest(key),
            record: KeyRecord {
                token_id: format!("t-{key}"),
                user_id: 1,
                identifier: "App Token".into(),
                permissions: vec![],
                from_client: Some("CI1".into()),
                created_on: 0,
                memo: Default::default(),
            },
            now_ms: 5,
        }
    }

    fn fresh_code() -> Vec<u8> {
        encode(&super::super::tests::code(u64::MAX, None)).unwrap()
    }

    #[test]
    fn one_batch_answers_each_exchange_as_if_they_came_in_turn() {
        let t = trees();
        t.clients.insert("CI1", &b"{}"[..]).unwrap();
        for code in ["a", "b"] {
            t.codes.insert(digest(code), fresh_code()).unwrap();
        }
        t.codes.insert(digest("corrupt"), &b"not json"[..]).unwrap();
        let batch = [
            exchange("a", "k1"),
            exchange("a", "k2"),
            exchange("corrupt", "k3"),
            exchange("missing", "k4"),
            exchange("b", "k5"),
        ];
        let out = t.apply(&batch).unwrap();
        let shown: Vec<_> = out
            .iter()
            .map(|o| match o {
                Ok(r) => format!("{r:?}"),
                Err(StoreError::Corrupt(_)) => "corrupt record".to_string(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(
            shown,
            ["Issued", "Lost", "corrupt record", "Lost", "Issued"]
        );
        // Only the issued exchanges wrote anything.
        for (key, stored) in [
            ("k1", true),
            ("k2", false),
            ("k3", false),
            ("k4", false),
            ("k5", true),
        ] {
            assert_eq!(t.keys.get(digest(key)).unwrap().is_some(), stored, "{key}");
        }
        let spent: CodeRecord = decode(&t.codes.get(digest("a")).unwrap().unwrap()).unwrap();
        assert_eq!(spent.redeemed.unwrap().key_hash, hex::encode(digest("k1")));
    }
}
