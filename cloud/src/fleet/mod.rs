//! The fleet: device heartbeats (`POST /v1/devices/heartbeat`), the fleet view the cloud team
//! reads (`GET /v1/fleet`, the page in [`page`], the gauges in [`metrics`]), channels and the
//! operator's hold on rollouts ([`rollout`]).
//!
//! Invariants:
//! - the latest heartbeat of each device is one row, replaced in the transaction that also
//!   appends its history row and moves its rollout on, so the page never shows a device ahead of
//!   its rollout;
//! - history is bounded by time ([`HISTORY_RETENTION`]) and thinned beyond its last hour to one
//!   heartbeat per device and [`HISTORY_BUCKET`] ([`thin_history`]), both by every replica
//!   (idempotent);
//! - online/offline is computed at read time from PostgreSQL's clock (`fleet.offline_after_secs`),
//!   never stored, so no sweeper has to flip it;
//! - every number on the page, in `/v1/fleet` and in `/metrics` comes from the same queries here.

pub mod charts;
pub mod counts;
pub mod filter;
pub mod http;
pub mod metrics;
pub mod page;
pub mod record;
pub mod rollout;
pub mod sql;
pub mod views;

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::FleetConfig;

pub use record::{device_detail, devices, fleet_view, rollout_detail};
pub use views::*;

/// A counter from a heartbeat as PostgreSQL's bigint (saturating).
fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// What the fleet's handlers (JSON and page) need of the application state.
#[derive(Clone)]
pub struct FleetState {
    pub db: PgPool,
    pub fleet: FleetConfig,
}

/// How long heartbeat history is kept: a day to draw, plus slack for time zones and late looks.
pub const HISTORY_RETENTION: Duration = Duration::from_secs(26 * 3600);

/// How often each replica deletes history older than [`HISTORY_RETENTION`].
pub const HISTORY_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// History younger than this keeps every heartbeat.
pub const HISTORY_RAW: Duration = Duration::from_secs(3600);
/// Beyond [`HISTORY_RAW`], one heartbeat (the last) per device per bucket of this length: 144 a
/// day, what a day's chart draws.
pub const HISTORY_BUCKET: Duration = Duration::from_secs(600);
/// How often each replica thins history, and the most buckets one pass thins: a pass does at
/// most half an hour of the fleet's heartbeats (about 300 000 rows at 10 000 boxes), and after a
/// start the backlog of a day is thinned within an hour.
pub const HISTORY_THIN_INTERVAL: Duration = Duration::from_secs(60);
pub const HISTORY_THIN_BUCKETS: u32 = 3;

/// Longest free text (reasons, states) kept from a heartbeat.
pub const MAX_TEXT: usize = 500;

/// Backlog age after which a branch needs attention: its changes are an hour late in the cloud.
pub const BACKLOG_ATTENTION_SECS: u64 = 3600;

/// Clock skew that needs attention (signed requests allow five minutes).
pub const SKEW_ATTENTION_MS: i64 = 60_000;
/// A box whose last good backup is older than this needs a look: a daily timer, its random delay
/// and one missed night (the box's own `backup::STALE_AFTER_SECS`).
pub const BACKUP_ATTENTION_SECS: u64 = 36 * 3600;

/// Free disk share under which a box needs attention.
pub const DISK_ATTENTION_PCT: u64 = 10;

/// Thins history in `[from, until)` (both on [`HISTORY_BUCKET`] boundaries, in seconds since the
/// epoch) to the last heartbeat of each device in each bucket, bucket by bucket; the rows deleted.
pub async fn thin_history(db: &PgPool, from: i64, until: i64) -> Result<u64, sqlx::Error> {
    let bucket = i64::try_from(HISTORY_BUCKET.as_secs()).unwrap_or(600);
    let mut deleted = 0;
    let mut start = from;
    while start < until {
        deleted += sqlx::query(
            "DELETE FROM heartbeat_history h
             USING (SELECT device_id, max(received_at) AS kept FROM heartbeat_history
                    WHERE received_at >= to_timestamp($1::bigint) AND received_at < to_timestamp($2::bigint)
                    GROUP BY device_id) k
             WHERE h.received_at >= to_timestamp($1::bigint) AND h.received_at < to_timestamp($2::bigint)
               AND h.device_id = k.device_id AND h.received_at < k.kept",
        )
        .bind(start)
        .bind(start + bucket)
        .execute(db)
        .await?
        .rows_affected();
        start += bucket;
    }
    Ok(deleted)
}

/// Seconds since the epoch, rounded down to a [`HISTORY_BUCKET`] boundary.
fn bucket_floor(at: std::time::SystemTime) -> i64 {
    let bucket = i64::try_from(HISTORY_BUCKET.as_secs()).unwrap_or(600);
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    secs - secs.rem_euclid(bucket)
}

/// Every [`HISTORY_THIN_INTERVAL`], thins the next at most [`HISTORY_THIN_BUCKETS`] buckets of
/// history that left the raw hour (from the start of the retention after a start, then where the
/// last pass ended); every [`HISTORY_PRUNE_INTERVAL`], deletes history older than
/// [`HISTORY_RETENTION`] and drops expired page sessions. Until `token` is cancelled.
pub async fn prune(db: PgPool, token: CancellationToken) {
    let mut interval = tokio::time::interval(HISTORY_THIN_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = HISTORY_RETENTION.as_secs_f64();
    let bucket = i64::try_from(HISTORY_BUCKET.as_secs()).unwrap_or(600);
    let mut thinned_to = bucket_floor(std::time::SystemTime::now() - HISTORY_RETENTION);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        let raw_from = bucket_floor(std::time::SystemTime::now() - HISTORY_RAW);
        let until = raw_from.min(thinned_to + bucket * i64::from(HISTORY_THIN_BUCKETS));
        if until > thinned_to {
            match thin_history(&db, thinned_to, until).await {
                Ok(deleted) => {
                    tracing::debug!(deleted, "fleet history thinned");
                    thinned_to = until;
                }
                Err(error) => tracing::warn!(%error, "thinning fleet history failed"),
            }
        }
        if last_prune.is_some_and(|at| at.elapsed() < HISTORY_PRUNE_INTERVAL) {
            continue;
        }
        last_prune = Some(tokio::time::Instant::now());
        let history = sqlx::query(
            "DELETE FROM heartbeat_history WHERE received_at < now() - make_interval(secs => $1)",
        )
        .bind(retention)
        .execute(&db)
        .await;
        let sessions = sqlx::query("DELETE FROM fleet_sessions WHERE expires_at < now()")
            .execute(&db)
            .await;
        for result in [history, sessions] {
            if let Err(error) = result {
                tracing::warn!(%error, "pruning fleet history or sessions failed");
            }
        }
    }
}
