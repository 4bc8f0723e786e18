//! [`TtlMap`]: a small in-process cache whose entries are trusted for a fixed time and whose size
//! is bounded (moka), for what a replica may remember without asking PostgreSQL each time (API
//! tokens found valid, customers found verified, a SKU's assets). What it holds must never let a
//! replica grant, for longer than the TTL, what the database would refuse: positive answers, or
//! lists the database still checks (a hold on an asset gone from the list is refused by PostgreSQL).

use std::hash::Hash;
use std::time::Duration;

pub type TtlMap<K, V> = moka::sync::Cache<K, V>;

/// A cache of at most `capacity` entries, each trusted for `ttl` after it was put.
pub fn ttl_map<K, V>(ttl: Duration, capacity: u64) -> TtlMap<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_the_size_stays_bounded() {
        let map = ttl_map(Duration::from_secs(60), 2);
        map.insert("a".to_owned(), 1);
        map.insert("b".to_owned(), 2);
        assert_eq!(map.get("a"), Some(1));
        map.insert("c".to_owned(), 3);
        assert_eq!(map.get("c"), Some(3));
        map.run_pending_tasks();
        assert!(map.entry_count() <= 2);
        let expired = ttl_map(Duration::ZERO, 8);
        expired.insert("a".to_owned(), 1);
        assert_eq!(expired.get("a"), None);
    }
}
