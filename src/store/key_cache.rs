//! Decoded key records kept in memory, so that a request with a key costs a
//! hash lookup rather than a sled read and a JSON decode.
//!
//! Correctness under revocation: every change that removes keys calls
//! [`KeyCache::forget`] with their digests after its transaction and before
//! it answers. That drops those records and moves the cache's generation on.
//! A reader that missed records the generation *before* reading the store,
//! and may only fill the cache if it has not moved since. So a record read
//! just before a revocation committed can never be cached after it, and once
//! a revocation has answered, no request sees the key. Other keys' records
//! stay: a revocation costs the keys in use at most one store read each
//! (the reads in flight when it lands are not kept).
//!
//! Only keys that exist are cached: they are digests of secrets an attacker
//! does not hold, so a fast non-keyed hash is safe here.

use std::sync::Arc;

use crossbeam_utils::sync::ShardedLock;
use rustc_hash::FxHashMap;

use super::{Digest, KeyRecord};

/// Where [`KeyCache::generation`] was when a reader went to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

struct Inner {
    generation: u64,
    records: FxHashMap<Digest, Arc<KeyRecord>>,
    /// Which eighth of the digests a full cache drops next.
    next_eighth: u8,
}

/// A bounded map from key digest to its live record.
pub struct KeyCache {
    /// Read on every request with a key, by every worker, and written only
    /// when a key is first read from the store or removed. A plain `RwLock`
    /// keeps one reader count that every read changes, so with two workers
    /// each read found its cache line on the other core, and a key check
    /// cost more on each of two threads than on one (`cargo bench --bench
    /// micro`, recorded in benches/README.md). A sharded lock gives each thread a
    /// lock of its own to read under; a write takes them all.
    inner: ShardedLock<Inner>,
    capacity: usize,
}

impl KeyCache {
    /// A cache of at most `capacity` records. When full it drops an eighth
    /// of them, those whose digests fall in the eighth whose turn it is:
    /// digests are uniform, so this is a random eighth, found in one pass
    /// once every `capacity / 8` fills. A key in steady use is then read
    /// from the store again at most once in eight such rounds, where
    /// emptying the whole cache would send every key in use back to the
    /// store at once.
    pub fn new(capacity: usize) -> KeyCache {
        KeyCache {
            inner: ShardedLock::new(Inner {
                generation: 0,
                records: FxHashMap::default(),
                next_eighth: 0,
            }),
            capacity,
        }
    }

    /// The cached record for `key`, shared: a hit costs a reference count,
    /// not a copy of the record's strings.
    pub fn get(&self, key: &Digest) -> Option<Arc<KeyRecord>> {
        self.inner.read().ok()?.records.get(key).cloned()
    }

    /// Call before reading the store on a miss; pass the result to [`Self::fill`].
    pub fn generation(&self) -> Generation {
        Generation(self.inner.read().map(|i| i.generation).unwrap_or(u64::MAX))
    }

    /// Caches a record read from the store, unless a key was removed since
    /// `seen` was taken (the record may then already be revoked).
    pub fn fill(&self, seen: Generation, key: Digest, record: Arc<KeyRecord>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        if inner.generation != seen.0 || self.capacity == 0 {
            return;
        }
        // Eight rounds drop every eighth, so this ends.
        while inner.records.len() >= self.capacity {
            let eighth = inner.next_eighth;
            inner.next_eighth = (eighth + 1) % 8;
            inner.records.retain(|digest, _| digest[0] % 8 != eighth);
        }
        inner.records.insert(key, record);
    }

    /// Forgets the records of `removed` (key digests, as the store's trees
    /// hold them), and any read of the store in flight; call after every
    /// change that removes keys. A digest of the wrong length cannot be a
    /// cached key, but then nothing is assumed and every record goes.
    pub fn forget<K: AsRef<[u8]>>(&self, removed: &[K]) {
        // A poisoned lock is recovered, not skipped: a missed removal would
        // keep a revoked key working.
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation = inner.generation.wrapping_add(1);
        for key in removed {
            match Digest::try_from(key.as_ref()) {
                Ok(digest) => {
                    inner.records.remove(&digest);
                }
                Err(_) => {
                    inner.records.clear();
                    return;
                }
            }
        }
    }
}

impl KeyCache {
    /// Forgets every record, and any read of the store in flight: for when
    /// removals may have been missed (a shared store's notices were lost).
    pub fn forget_all(&self) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.generation = inner.generation.wrapping_add(1);
        inner.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token_id: &str) -> Arc<KeyRecord> {
        Arc::new(KeyRecord {
            token_id: token_id.into(),
            user_id: 1,
            identifier: "x".into(),
            permissions: vec![],
            from_client: None,
            created_on: 0,
            memo: Default::default(),
        })
    }

    #[test]
    fn a_filled_record_is_served_until_forgotten() {
        let c = KeyCache::new(10);
        let g = c.generation();
        c.fill(g, [1; 32], record("a"));
        c.fill(g, [3; 32], record("c"));
        assert_eq!(c.get(&[1; 32]).unwrap().token_id, "a");
        assert!(c.get(&[2; 32]).is_none());
        c.forget(&[[1u8; 32], [2; 32]]);
        assert!(c.get(&[1; 32]).is_none());
        // Keys not removed stay in memory.
        assert_eq!(c.get(&[3; 32]).unwrap().token_id, "c");
        // A digest that cannot be a key's: everything goes.
        c.forget(&[&[3u8; 5][..]]);
        assert!(c.get(&[3; 32]).is_none());
        c.fill(c.generation(), [4; 32], record("d"));
        let seen = c.generation();
        c.forget_all();
        assert!(c.get(&[4; 32]).is_none());
        c.fill(seen, [4; 32], record("stale"));
        assert!(c.get(&[4; 32]).is_none(), "a read from before is not kept");
    }

    #[test]
    fn forgetting_a_record_drops_what_was_kept_with_it() {
        let c = KeyCache::new(10);
        let kept = record("a");
        kept.memo.set_assertion(crate::store::Memoized {
            made: std::time::Instant::now(),
            generation: 0,
            value: http::HeaderValue::from_static("assertion"),
        });
        let memo = std::sync::Arc::downgrade(&kept);
        c.fill(c.generation(), [1; 32], kept);
        let served = c.get(&[1; 32]).unwrap();
        assert_eq!(served.memo.assertion().as_ref().unwrap().value, "assertion");
        drop(served);
        c.forget(&[[1u8; 32]]);
        assert!(memo.upgrade().is_none(), "the record and its memo are gone");
    }

    #[test]
    fn a_read_that_raced_a_removal_is_not_cached() {
        let c = KeyCache::new(10);
        let seen = c.generation();
        // A revocation commits and forgets the key while the reader holds its
        // old record; reads of other keys in flight then may not fill either.
        c.forget(&[[1u8; 32]]);
        c.fill(seen, [1; 32], record("stale"));
        c.fill(seen, [2; 32], record("other"));
        assert!(c.get(&[1; 32]).is_none());
        assert!(c.get(&[2; 32]).is_none());
        // A read that starts afterwards may fill it.
        let g = c.generation();
        c.fill(g, [1; 32], record("fresh"));
        assert_eq!(c.get(&[1; 32]).unwrap().token_id, "fresh");
    }

    #[test]
    fn a_full_cache_keeps_most_of_its_records() {
        let c = KeyCache::new(800);
        let key = |i: u32| -> Digest { crate::store::digest(&i.to_string()) };
        for i in 0..800 {
            c.fill(c.generation(), key(i), record("k"));
        }
        assert!((0..800).all(|i| c.get(&key(i)).is_some()));
        // One more: about an eighth goes, the rest stay.
        c.fill(c.generation(), key(800), record("k"));
        let held = (0..800).filter(|&i| c.get(&key(i)).is_some()).count();
        assert!((600..=760).contains(&held), "{held}");
        assert!(c.get(&key(800)).is_some());
        // Filled on and on, it stays within its capacity.
        for i in 801..5000 {
            c.fill(c.generation(), key(i), record("k"));
        }
        let held = (0..5000).filter(|&i| c.get(&key(i)).is_some()).count();
        assert!((600..=800).contains(&held), "{held}");
    }

    #[test]
    fn it_never_holds_more_than_its_capacity() {
        let c = KeyCache::new(3);
        for i in 0..10u8 {
            c.fill(c.generation(), [i; 32], record("k"));
        }
        let held = (0..10u8).filter(|i| c.get(&[*i; 32]).is_some()).count();
        assert!((1..=3).contains(&held), "{held}");
        assert!(c.get(&[9; 32]).is_some(), "the newest record is kept");
        let off = KeyCache::new(0);
        off.fill(off.generation(), [1; 32], record("k"));
        assert!(off.get(&[1; 32]).is_none());
    }
}
