//! The fleet's online/offline count over time, for the week's chart on the fleet page: every
//! replica samples it every [`SAMPLE_INTERVAL`] into `fleet_counts`, one row an hour that keeps
//! the hour's worst sample (the most devices offline), and deletes rows older than
//! [`COUNTS_RETENTION`].
//!
//! Invariants:
//! - sampling is idempotent across replicas: one upsert per sample, the worse sample wins, so
//!   two replicas sampling the same hour leave the same row as one would;
//! - online means what the page and `/metrics` mean (a heartbeat within
//!   `fleet.offline_after_secs`, by PostgreSQL's clock);
//! - the table is bounded: 24 rows a day, none older than [`COUNTS_RETENTION`].

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::charts::{HourCount, WEEK_HOURS};

/// How often each replica samples the fleet's count.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(300);
/// How soon a replica tries again after a sample failed (PostgreSQL away or its pool busy as
/// the replica starts), instead of leaving the hour unsampled for a whole [`SAMPLE_INTERVAL`].
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// How long hourly counts are kept: the week drawn, and a day of slack.
pub const COUNTS_RETENTION: Duration = Duration::from_secs(8 * 86_400);

/// Samples the fleet's count into this hour's row (the worse sample wins) and deletes rows older
/// than [`COUNTS_RETENTION`].
pub async fn sample(db: &PgPool, offline_after: Duration) -> Result<(), sqlx::Error> {
    // Online as `record::DeviceRow::view` says it: floor(age) <= offline_after.
    sqlx::query(
        "INSERT INTO fleet_counts (hour, devices, online, offline)
         SELECT date_trunc('hour', now()), count(*), count(*) FILTER (WHERE online),
                count(*) FILTER (WHERE NOT online)
         FROM (SELECT coalesce(h.received_at > now() - make_interval(secs => $1 + 1), false) AS online
               FROM devices d LEFT JOIN device_heartbeats h ON h.device_id = d.id
               WHERE d.revoked_at IS NULL) AS f
         ON CONFLICT (hour) DO UPDATE SET devices = excluded.devices, online = excluded.online,
                                          offline = excluded.offline
         WHERE (excluded.offline, excluded.devices) > (fleet_counts.offline, fleet_counts.devices)",
    )
    .bind(offline_after.as_secs_f64())
    .execute(db)
    .await?;
    sqlx::query("DELETE FROM fleet_counts WHERE hour < now() - make_interval(secs => $1)")
        .bind(COUNTS_RETENTION.as_secs_f64())
        .execute(db)
        .await?;
    Ok(())
}

/// Samples every [`SAMPLE_INTERVAL`] (the first at once, and [`RETRY_AFTER_FAILURE`] after a
/// failed one) until `token` is cancelled.
pub async fn run(db: PgPool, offline_after: Duration, token: CancellationToken) {
    let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        if let Err(error) = sample(&db, offline_after).await {
            tracing::warn!(%error, retry_in = ?RETRY_AFTER_FAILURE, "sampling the fleet's online count failed");
            interval.reset_after(RETRY_AFTER_FAILURE);
        }
    }
}

/// The week's hourly counts and the start of the current hour (unix seconds, PostgreSQL's clock).
pub async fn week(db: &PgPool) -> Result<(i64, Vec<HourCount>), sqlx::Error> {
    let now: i64 =
        sqlx::query_scalar("SELECT extract(epoch FROM date_trunc('hour', now()))::bigint")
            .fetch_one(db)
            .await?;
    let hours = sqlx::query_as(
        "SELECT extract(epoch FROM hour)::bigint AS hour, devices::bigint AS devices,
                online::bigint AS online, offline::bigint AS offline
         FROM fleet_counts WHERE hour > to_timestamp($1) - make_interval(hours => $2)
         ORDER BY hour LIMIT $2",
    )
    .bind(now)
    .bind(i32::try_from(WEEK_HOURS).unwrap_or(i32::MAX))
    .fetch_all(db)
    .await?;
    Ok((now, hours))
}
