//! Locks on asset-days in front of PostgreSQL: Redlock over the independent nodes of
//! `REDIS_LOCK_NODES` (one node, or none configured, is plain `SET NX PX` on that node).
//!
//! Per the Redlock algorithm: the same random token is set with `NX PX ttl` on every node, each
//! attempt bounded by [`NODE_TIMEOUT`]; the lock is held if a majority took it and the validity
//! left (`ttl − elapsed − drift`, drift = 1 % of ttl + 2 ms) is positive; otherwise it is released
//! everywhere. One lock covers every day of a range (one Lua script per node sets all the day keys
//! or none), so overlapping ranges contend on the days they share.
//!
//! A lock is only ever an optimisation: PostgreSQL's exclusion constraint decides. A holder paused
//! past its TTL may still try to insert, and PostgreSQL refuses it. The token is stored on the
//! hold row (fencing), and a release deletes only keys still holding that token, so a late
//! release cannot free someone else's lock. When fewer than a majority of nodes answer at all,
//! or when the vote splits (we took some nodes but not a majority: a herd spread over the nodes),
//! the lock is "unavailable" and the caller goes to PostgreSQL without it; only a majority that
//! answered with every node refusing means "contended", a taken slot answered from Redis.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::Script;
use time::Date;

use super::calendar::AssetKey;
use super::types::format_day;
use crate::redis_conn::RedisConn;

/// How long one node may take to answer a lock command: far below any TTL, so a dead node
/// costs little (Redlock: "the timeout is small compared to the auto-release time").
pub const NODE_TIMEOUT: Duration = Duration::from_millis(100);

/// Sets every key to the token with PX ARGV[2] if none exists. 1 if set, 0 if any was held.
const ACQUIRE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return 1
";

/// Deletes the keys that still hold the token.
const RELEASE: &str = r"
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
";

#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    /// Held by us on a majority, with this token, for about this long.
    Held { token: String, validity: Duration },
    /// A majority answered and every node that answered refused: someone else holds the days.
    Contended,
    /// Too few nodes answered, or a split vote: go to PostgreSQL without a lock.
    Unavailable,
}

#[derive(Clone)]
pub struct Locks {
    nodes: Arc<[RedisConn]>,
}

/// Hashed once per process, outside [`Locks`], so cloning the app state per request allocates
/// nothing for them.
static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// The day keys of `[start, end)` for `asset`.
pub fn keys(asset: &AssetKey, start: Date, end: Date) -> Vec<String> {
    let mut keys = Vec::new();
    let mut day = Some(start);
    while let Some(current) = day.filter(|day| *day < end) {
        keys.push(format!("lock:{{{}}}:{}", asset.tag(), format_day(current)));
        day = current.next_day();
    }
    keys
}

impl Locks {
    pub fn new(nodes: Vec<RedisConn>) -> Locks {
        Locks {
            nodes: nodes.into(),
        }
    }

    fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// Loads the lock scripts into every node that answers within [`NODE_TIMEOUT`]; how many
    /// did.
    pub async fn load_scripts(&self) -> usize {
        let loads = self.nodes.iter().map(|node| async move {
            tokio::time::timeout(NODE_TIMEOUT, node.load_scripts(&[ACQUIRE, RELEASE]))
                .await
                .is_ok_and(|loaded| loaded.is_ok())
        });
        join_all(loads).await.into_iter().filter(|ok| *ok).count()
    }

    /// Tries once to lock `keys` for `ttl` (Redlock; see the module doc).
    pub async fn acquire(&self, keys: &[String], ttl: Duration) -> Acquired {
        let token = {
            use rand::Rng as _;
            let mut bytes = [0_u8; 16];
            rand::rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let started = Instant::now();
        let args = [token.clone(), ttl_ms.to_string()];
        let attempts = self.nodes.iter().map(|node| {
            let args = &args;
            async move {
                let acquire = node.eval::<i64>(&ACQUIRE_SCRIPT, ACQUIRE, keys, args);
                tokio::time::timeout(NODE_TIMEOUT, acquire)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        });
        let answers = join_all(attempts).await;
        let answered = answers.iter().filter(|answer| answer.is_some()).count();
        let taken = answers.iter().filter(|answer| **answer == Some(1)).count();
        let drift = ttl / 100 + Duration::from_millis(2);
        let validity = ttl.saturating_sub(started.elapsed()).saturating_sub(drift);
        if taken >= self.quorum() && !validity.is_zero() {
            return Acquired::Held { token, validity };
        }
        self.release(keys, &token).await;
        if answered >= self.quorum() && taken == 0 {
            Acquired::Contended
        } else {
            // Too few nodes answered, or a split vote (a herd spread its tokens over the nodes so
            // that nobody has a majority): the lock cannot decide, so PostgreSQL does. Refusing
            // here would turn the whole herd away from a free slot.
            Acquired::Unavailable
        }
    }

    /// Deletes the keys still holding `token` on every node that answers; best effort (a key
    /// left behind expires with its TTL).
    pub async fn release(&self, keys: &[String], token: &str) {
        let args = [token.to_owned()];
        let releases = self.nodes.iter().map(|node| {
            let args = &args;
            async move {
                let release = node.eval::<i64>(&RELEASE_SCRIPT, RELEASE, keys, args);
                let _ = tokio::time::timeout(NODE_TIMEOUT, release).await;
            }
        });
        join_all(releases).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::types::parse_day;

    #[test]
    fn one_key_per_day_across_a_month_end() {
        let asset = AssetKey {
            sku: "AVZ".into(),
            branch: "JKT01".into(),
            asset_id: "a1".into(),
        };
        let day = |raw| parse_day("day", raw).expect("valid");
        assert_eq!(
            keys(&asset, day("2026-12-31"), day("2027-01-02")),
            [
                "lock:{AVZ:JKT01/a1}:2026-12-31",
                "lock:{AVZ:JKT01/a1}:2027-01-01"
            ]
        );
        assert!(keys(&asset, day("2026-12-31"), day("2026-12-31")).is_empty());
    }
}
