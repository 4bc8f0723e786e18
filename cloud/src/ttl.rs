//! [`TtlMap`]: a small in-process map whose entries are trusted for a fixed time and whose size
//! is bounded, for what a replica may remember without asking PostgreSQL each time (API tokens
//! found valid, customers found verified, a SKU's assets). What it holds must never let a
//! replica grant, for longer than the TTL, what the database would refuse: positive answers, or
//! lists the database still checks (a hold on an asset gone from the list is refused by PostgreSQL).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlMap<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlMap {
            ttl,
            capacity,
            entries: Mutex::default(),
        }
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
}
