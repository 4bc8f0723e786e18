//! [`TtlMap`]: a small in-process map whose entries are trusted for a fixed time and whose size
//! is bounded, for what a replica may remember without asking PostgreSQL each time (API tokens
//! found valid, customers found verified, a SKU's assets). What it holds must never let a
//! replica grant, for longer than the TTL, what the database would refuse: positive answers, or
//! lists the database still checks (a hold on an asset gone from the list is refused by PostgreSQL).
//!
//! [`TtlMap::get_or_fetch`] fetches a missing key once however many requests ask for it at that
//! moment: the others wait for that fetch and take its answer from the map. Without it a herd
//! meeting a replica that just started (or an entry that just ran out) sent every request to
//! PostgreSQL for the same row.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The lock a key's fetch holds while it runs.
type Gate = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug)]
pub struct TtlMap<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
    /// Key → the gate of its fetch in flight; an entry lives while someone holds or awaits it.
    fetches: Mutex<HashMap<K, Gate>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlMap {
            ttl,
            capacity,
            entries: Mutex::default(),
            fetches: Mutex::default(),
        }
    }

    /// The value of `key`, or `fetch`'s, remembered when it is `Ok` (an error is not: the next
    /// request fetches again). Concurrent callers for one key run one `fetch`.
    pub async fn get_or_fetch<E, F>(&self, key: K, fetch: F) -> Result<V, E>
    where
        F: Future<Output = Result<V, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(value);
        }
        let turn = FetchTurn::new(self, key);
        let _fetching = turn.gate.lock().await;
        if let Some(value) = self.get(&turn.key) {
            return Ok(value);
        }
        let value = fetch.await?;
        self.put(turn.key.clone(), value.clone());
        Ok(value)
    }

    /// The value, if it was put less than the TTL ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Remembers `value` from now. Past the capacity, expired entries are dropped, then all.
    pub fn put(&self, key: K, value: V) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// One caller's turn at fetching `key`; the key's gate leaves the map with the last turn, also
/// when a caller is dropped while it waits.
struct FetchTurn<'a, K: Eq + Hash, V> {
    map: &'a TtlMap<K, V>,
    key: K,
    gate: Gate,
}

impl<'a, K: Eq + Hash + Clone, V> FetchTurn<'a, K, V> {
    fn new(map: &'a TtlMap<K, V>, key: K) -> Self {
        let gate = map
            .fetches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        FetchTurn { map, key, gate }
    }
}

impl<K: Eq + Hash, V> Drop for FetchTurn<'_, K, V> {
    fn drop(&mut self) {
        let mut fetches = self
            .map
            .fetches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's and this turn's: nobody else holds or awaits it.
        if Arc::strong_count(&self.gate) <= 2
            && fetches
                .get(&self.key)
                .is_some_and(|held| Arc::ptr_eq(held, &self.gate))
        {
            fetches.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let map = TtlMap::new(Duration::from_secs(60), 2);
        map.put("a".to_owned(), 1);
        map.put("b".to_owned(), 2);
        assert_eq!(map.get("a"), Some(1));
        map.put("c".to_owned(), 3);
        assert_eq!(map.get("c"), Some(3));
        assert!(map.entries.lock().map(|e| e.len()).unwrap_or(0) <= 2);
        let expired = TtlMap::new(Duration::ZERO, 8);
        expired.put("a".to_owned(), 1);
        assert_eq!(expired.get("a"), None);
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once_and_errors_are_not_kept() {
        let map = TtlMap::new(Duration::from_secs(60), 8);
        let fetched = std::sync::atomic::AtomicUsize::new(0);
        let fetch = || async {
            fetched.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok::<_, ()>(7)
        };
        let answers =
            futures_util::future::join_all((0..50).map(|_| map.get_or_fetch("k", fetch()))).await;
        assert!(answers.iter().all(|a| *a == Ok(7)));
        assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(map.fetches.lock().map(|f| f.is_empty()).unwrap_or(false));

        assert_eq!(
            map.get_or_fetch("e", async { Err::<i32, _>("no") }).await,
            Err("no")
        );
        assert_eq!(map.get("e"), None);
    }
}
