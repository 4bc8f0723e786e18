//! The Redis availability calendar: one bit per day per asset, in one key per month,
//! `avail:{<SKU>:<Branch>/<AssetID>}:<YYYYMM>` (the hash tag keeps an asset's months in one
//! Cluster slot, so a Lua script may touch all of them). Bit `d - 1` of a month's key is day `d`.
//! A set bit means "taken" (a live booking, turnover buffer included).
//!
//! Only a fast path: it answers availability and turns a herd away before PostgreSQL, but a slot
//! is only ever given by PostgreSQL. Invariants:
//! - a range is reserved by one Lua script that checks every day of every month it spans and
//!   sets them only if all were clear (all or nothing, month ends included); `BITCOUNT .. BIT`
//!   and `BITFIELD` inside the script, never `BITOP`;
//! - [`BUILT_KEY`] exists only while the calendar holds everything PostgreSQL has: `rebuild`
//!   sets it last; a wiped or restarted Redis lacks it, and then every answer comes from
//!   PostgreSQL until a rebuild;
//! - nothing here deletes a key it did not compute from PostgreSQL (rebuild, repair) or set for a
//!   booking it knows ended (release).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use futures_util::future::join_all;
use redis::{RedisError, Script};
use sqlx::PgPool;
use time::Date;

use super::record;
use crate::redis_conn::RedisConn;

/// Pipelines in flight at once when a batch spans many cluster slots (a rebuild).
const PIPELINES_IN_FLIGHT: usize = 16;

/// Present while the calendar is complete (see the module doc).
pub const BUILT_KEY: &str = "avail-built";

/// Marker of an `Idempotency-Key` seen: a retry skips the calendar and gets PostgreSQL's stored
/// answer. Kept a day.
pub const IDEMPOTENCY_TTL_SECONDS: u64 = 86_400;

/// Checks that every bit of every `[first, last]` range is clear, then sets them all.
/// KEYS: the month keys; ARGV: first and last bit per key. Returns 1 if reserved, 0 if taken.
const RESERVE: &str = r"
for i = 1, #KEYS do
  local first = tonumber(ARGV[2 * i - 1])
  local last = tonumber(ARGV[2 * i])
  if redis.call('BITCOUNT', KEYS[i], first, last, 'BIT') > 0 then
    return 0
  end
end
for i = 1, #KEYS do
  local first = tonumber(ARGV[2 * i - 1])
  local last = tonumber(ARGV[2 * i])
  local args = {}
  for bit = first, last do
    args[#args + 1] = 'SET'
    args[#args + 1] = 'u1'
    args[#args + 1] = bit
    args[#args + 1] = 1
  end
  redis.call('BITFIELD', KEYS[i], unpack(args))
end
return 1
";

/// Clears every bit of the ranges (same KEYS and ARGV as [`RESERVE`]).
const RELEASE: &str = r"
for i = 1, #KEYS do
  local first = tonumber(ARGV[2 * i - 1])
  local last = tonumber(ARGV[2 * i])
  local args = {}
  for bit = first, last do
    args[#args + 1] = 'SET'
    args[#args + 1] = 'u1'
    args[#args + 1] = bit
    args[#args + 1] = 0
  end
  redis.call('BITFIELD', KEYS[i], unpack(args))
end
return 1
";

/// Which asset: the calendar's name for it is `<SKU>:<Branch>/<AssetID>` (branch ids have no
/// `/`, so the name is unambiguous).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AssetKey {
    pub sku: String,
    pub branch: String,
    pub asset_id: String,
}

impl AssetKey {
    pub fn tag(&self) -> String {
        format!("{}:{}/{}", self.sku, self.branch, self.asset_id)
    }

    pub fn month_key(&self, year: i32, month: u8) -> String {
        format!("avail:{{{}}}:{year:04}{month:02}", self.tag())
    }
}

/// The month keys a half-open day range `[start, end)` spans, each with its first and last bit.
pub fn segments(asset: &AssetKey, start: Date, end: Date) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    let mut day = start;
    while day < end {
        let (year, month) = (day.year(), u8::from(day.month()));
        let first = u32::from(day.day()) - 1;
        let mut last = first;
        let mut next = day.next_day();
        while let Some(candidate) = next {
            if candidate >= end || u8::from(candidate.month()) != month {
                break;
            }
            last = u32::from(candidate.day()) - 1;
            next = candidate.next_day();
        }
        out.push((asset.month_key(year, month), first, last));
        match next {
            Some(next) => day = next,
            None => break,
        }
    }
    out
}

/// The bitmaps (Redis string values) that show `periods` for one asset, by month key.
pub fn bitmaps(asset: &AssetKey, periods: &[(Date, Date)]) -> BTreeMap<String, Vec<u8>> {
    let mut maps: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for &(start, end) in periods {
        for (key, first, last) in segments(asset, start, end) {
            let bytes = maps.entry(key).or_default();
            for bit in first..=last {
                let index = usize::try_from(bit / 8).expect("a day index fits usize");
                if bytes.len() <= index {
                    bytes.resize(index + 1, 0);
                }
                bytes[index] |= 0x80 >> (bit % 8);
            }
        }
    }
    maps
}

/// The calendar on one Redis node or a Redis Cluster. Every call may fail (Redis down, a
/// failover under way): callers fall back to PostgreSQL.
///
/// On a cluster every script and pipeline stays in one slot: an asset's month keys share its
/// hash tag, and a batch over many assets is split by slot ([`RedisConn::by_slot`]).
#[derive(Clone)]
pub struct Calendar {
    redis: RedisConn,
}

/// The scripts, hashed once per process (a `Script` owns its source and SHA-1: keeping them out
/// of [`Calendar`] keeps the per-request clone of the app state free of allocations).
static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

impl Calendar {
    pub fn new(redis: RedisConn) -> Calendar {
        Calendar { redis }
    }

    /// A handle on the calendar's Redis (the waitlist mirror lives there too).
    pub fn connection(&self) -> RedisConn {
        self.redis.clone()
    }

    /// Loads the calendar's scripts into its Redis (see [`RedisConn::load_scripts`]).
    pub async fn load_scripts(&self) -> Result<(), RedisError> {
        self.redis.load_scripts(&[RESERVE, RELEASE]).await
    }

    /// Whether the calendar is complete (see [`BUILT_KEY`]).
    pub async fn built(&self) -> Result<bool, RedisError> {
        let mut redis = self.redis.clone();
        redis::cmd("EXISTS")
            .arg(BUILT_KEY)
            .query_async::<bool>(&mut redis)
            .await
    }

    /// Runs `script` (with its `source`) over the month keys of `[start, end)`.
    async fn run(
        &self,
        (script, source): (&Script, &str),
        asset: &AssetKey,
        start: Date,
        end: Date,
    ) -> Result<bool, RedisError> {
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        for (key, first, last) in segments(asset, start, end) {
            keys.push(key);
            args.push(first.to_string());
            args.push(last.to_string());
        }
        let reply: i64 = self.redis.eval(script, source, &keys, &args).await?;
        Ok(reply == 1)
    }

    /// Marks `[start, end)` taken if every day of it is clear; `false` if any is taken.
    pub async fn reserve(
        &self,
        asset: &AssetKey,
        start: Date,
        end: Date,
    ) -> Result<bool, RedisError> {
        self.run((&RESERVE_SCRIPT, RESERVE), asset, start, end)
            .await
    }

    /// Clears `[start, end)`.
    pub async fn release(
        &self,
        asset: &AssetKey,
        start: Date,
        end: Date,
    ) -> Result<(), RedisError> {
        self.run((&RELEASE_SCRIPT, RELEASE), asset, start, end)
            .await
            .map(drop)
    }

    /// For each asset, whether every day of `[start, end)` is clear, or `None` if the calendar
    /// is not built (then it cannot say): one pipelined round trip on a node, one per slot (in
    /// parallel) on a cluster.
    pub async fn free(
        &self,
        assets: &[AssetKey],
        start: Date,
        end: Date,
    ) -> Result<Option<Vec<bool>>, RedisError> {
        // (key, (reply index, BITCOUNT range or EXISTS)).
        let mut items: Vec<(String, Count)> = vec![(BUILT_KEY.to_owned(), (0, None))];
        let mut per_asset = Vec::with_capacity(assets.len());
        for asset in assets {
            let parts = segments(asset, start, end);
            per_asset.push(parts.len());
            for (key, first, last) in parts {
                let index = items.len();
                items.push((key, (index, Some((first, last)))));
            }
        }
        let mut replies = vec![0_i64; items.len()];
        let mut groups = self.redis.by_slot(items);
        while !groups.is_empty() {
            let batch: Vec<_> = groups
                .drain(..groups.len().min(PIPELINES_IN_FLIGHT))
                .map(|group| count_bits(self.redis.clone(), group))
                .collect();
            for answer in join_all(batch).await {
                for (index, value) in answer? {
                    if let Some(reply) = replies.get_mut(index) {
                        *reply = value;
                    }
                }
            }
        }
        let mut replies = replies.into_iter();
        if replies.next() != Some(1) {
            return Ok(None);
        }
        Ok(Some(
            per_asset
                .into_iter()
                .map(|parts| replies.by_ref().take(parts).all(|count| count == 0))
                .collect(),
        ))
    }

    /// Notes that `created_by` sent `key`; `true` the first time. A key seen before is a retry,
    /// which PostgreSQL answers (the first attempt may still be in flight).
    pub async fn first_use_of_key(&self, created_by: &str, key: &str) -> Result<bool, RedisError> {
        let mut redis = self.redis.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(idempotency_key(created_by, key))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(IDEMPOTENCY_TTL_SECONDS)
            .query_async(&mut redis)
            .await?;
        Ok(set.is_some())
    }

    /// Records that `created_by`'s `key` made booking `id` (set right after the commit, before
    /// the calendar is marked): a first attempt that reaches the gate after its own retry has
    /// already won sees that the taken days are its own.
    pub async fn remember_booking(
        &self,
        created_by: &str,
        key: &str,
        id: &str,
    ) -> Result<(), RedisError> {
        let mut redis = self.redis.clone();
        redis::cmd("SET")
            .arg(idempotency_key(created_by, key))
            .arg(id)
            .arg("EX")
            .arg(IDEMPOTENCY_TTL_SECONDS)
            .query_async::<()>(&mut redis)
            .await
    }

    /// Whether `created_by`'s `key` already made a booking (see [`Calendar::remember_booking`]).
    pub async fn key_made_booking(&self, created_by: &str, key: &str) -> bool {
        let mut redis = self.redis.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(idempotency_key(created_by, key))
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        value.is_some_and(|value| value != "1")
    }

    /// Writes `maps` for the assets in `assets`, deleting their other month keys: one pipeline
    /// on a node, one per slot on a cluster.
    async fn write(
        &self,
        existing: &[String],
        maps: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), RedisError> {
        let mut items: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for key in existing {
            if !maps.contains_key(key) {
                items.push((key.clone(), None));
            }
        }
        for (key, value) in maps {
            items.push((key.clone(), Some(value.clone())));
        }
        let mut groups = self.redis.by_slot(items);
        while !groups.is_empty() {
            let batch: Vec<_> = groups
                .drain(..groups.len().min(PIPELINES_IN_FLIGHT))
                .map(|group| write_keys(self.redis.clone(), group))
                .collect();
            for written in join_all(batch).await {
                written?;
            }
        }
        Ok(())
    }

    /// Rebuilds the whole calendar from PostgreSQL's live bookings, then marks it built.
    /// Returns how many month keys it wrote.
    pub async fn rebuild(&self, db: &PgPool) -> Result<usize, CalendarError> {
        let periods = record::live_periods(db, None).await?;
        let mut by_asset: HashMap<AssetKey, Vec<(Date, Date)>> = HashMap::new();
        for (sku, branch, asset_id, start, end) in periods {
            by_asset
                .entry(AssetKey {
                    sku,
                    branch,
                    asset_id,
                })
                .or_default()
                .push((start, end));
        }
        let mut maps = BTreeMap::new();
        for (asset, periods) in &by_asset {
            maps.extend(bitmaps(asset, periods));
        }
        let existing = self.redis.scan("avail:*").await?;
        self.write(&existing, &maps).await?;
        let mut redis = self.redis.clone();
        redis::cmd("SET")
            .arg(BUILT_KEY)
            .arg(crate::web::now_ms())
            .query_async::<()>(&mut redis)
            .await?;
        Ok(maps.len())
    }

    /// Rebuilds one asset's keys from PostgreSQL: the repair after drift was noticed.
    pub async fn repair(&self, db: &PgPool, asset: &AssetKey) -> Result<(), CalendarError> {
        let periods: Vec<(Date, Date)> =
            record::live_periods(db, Some((&asset.branch, &asset.asset_id)))
                .await?
                .into_iter()
                .filter(|(sku, _, _, _, _)| *sku == asset.sku)
                .map(|(_, _, _, start, end)| (start, end))
                .collect();
        let maps = bitmaps(asset, &periods);
        let existing = self
            .redis
            .scan(&format!("avail:{{{}}}:*", glob_escape(&asset.tag())))
            .await?;
        self.write(&existing, &maps).await?;
        Ok(())
    }
}

/// What [`Calendar::free`] asks of one key: the reply's index, and the `BITCOUNT` range (none:
/// `EXISTS`).
type Count = (usize, Option<(u32, u32)>);

/// One slot's part of [`Calendar::free`]: `EXISTS` (no range) or `BITCOUNT` per key, answered
/// with each reply's index.
async fn count_bits(
    mut redis: RedisConn,
    group: Vec<(String, Count)>,
) -> Result<Vec<(usize, i64)>, RedisError> {
    let mut pipe = redis::pipe();
    for (key, (_, range)) in &group {
        match range {
            None => {
                pipe.cmd("EXISTS").arg(key);
            }
            Some((first, last)) => {
                pipe.cmd("BITCOUNT")
                    .arg(key)
                    .arg(first)
                    .arg(last)
                    .arg("BIT");
            }
        }
    }
    let values: Vec<i64> = pipe.query_async(&mut redis).await?;
    Ok(group
        .into_iter()
        .map(|(_, (index, _))| index)
        .zip(values)
        .collect())
}

/// One slot's part of [`Calendar::write`]: `SET` each key with a value, `DEL` the others.
async fn write_keys(
    mut redis: RedisConn,
    group: Vec<(String, Option<Vec<u8>>)>,
) -> Result<(), RedisError> {
    let mut pipe = redis::pipe();
    for (key, value) in &group {
        match value {
            None => pipe.cmd("DEL").arg(key).ignore(),
            Some(value) => pipe.cmd("SET").arg(key).arg(value.as_slice()).ignore(),
        };
    }
    pipe.query_async::<()>(&mut redis).await
}

fn idempotency_key(created_by: &str, key: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::new()
        .chain_update(created_by.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    format!("idem:{}", hex::encode(digest))
}

/// `text` with Redis glob metacharacters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("reading bookings from PostgreSQL failed")]
    Db(#[from] sqlx::Error),
    #[error("writing the calendar to Redis failed")]
    Redis(#[from] RedisError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::types::parse_day;

    fn day(raw: &str) -> Date {
        parse_day("day", raw).expect("valid")
    }

    fn asset() -> AssetKey {
        AssetKey {
            sku: "AVZ".into(),
            branch: "JKT01".into(),
            asset_id: "a1".into(),
        }
    }

    #[test]
    fn segments_split_at_month_and_year_ends() {
        type Segment<'a> = (&'a str, u32, u32);
        let cases: &[(&str, &str, &[Segment])] = &[
            (
                "2026-12-30",
                "2027-01-03",
                &[
                    ("avail:{AVZ:JKT01/a1}:202612", 29, 30),
                    ("avail:{AVZ:JKT01/a1}:202701", 0, 1),
                ],
            ),
            (
                "2026-02-01",
                "2026-02-02",
                &[("avail:{AVZ:JKT01/a1}:202602", 0, 0)],
            ),
            (
                "2028-02-28",
                "2028-03-01",
                &[("avail:{AVZ:JKT01/a1}:202802", 27, 28)],
            ),
            (
                "2026-01-31",
                "2026-03-02",
                &[
                    ("avail:{AVZ:JKT01/a1}:202601", 30, 30),
                    ("avail:{AVZ:JKT01/a1}:202602", 0, 27),
                    ("avail:{AVZ:JKT01/a1}:202603", 0, 0),
                ],
            ),
            ("2026-05-05", "2026-05-05", &[]),
        ];
        for (start, end, expected) in cases {
            let got = segments(&asset(), day(start), day(end));
            let expected: Vec<(String, u32, u32)> = expected
                .iter()
                .map(|(key, first, last)| ((*key).to_owned(), *first, *last))
                .collect();
            assert_eq!(got, expected, "{start}..{end}");
        }
    }

    #[test]
    fn bitmaps_put_day_one_in_the_high_bit() {
        let maps = bitmaps(
            &asset(),
            &[
                (day("2026-12-01"), day("2026-12-03")),
                (day("2026-12-10"), day("2026-12-11")),
            ],
        );
        assert_eq!(
            maps["avail:{AVZ:JKT01/a1}:202612"],
            vec![0b1100_0000, 0b0100_0000]
        );
        assert_eq!(glob_escape("a*b[1]"), "a\\*b\\[1\\]");
    }
}
