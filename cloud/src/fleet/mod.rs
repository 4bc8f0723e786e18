//! The fleet: device heartbeats (`POST /v1/devices/heartbeat`), the fleet view the cloud team
//! reads (`GET /v1/fleet`, the page in [`page`], the gauges in [`metrics`]), channels and the
//! operator's hold on rollouts ([`rollout`]).
//!
//! Invariants:
//! - the latest heartbeat of each device is one row, replaced in the transaction that also
//!   appends its history row and moves its rollout on, so the page never shows a device ahead of
//!   its rollout;
//! - history is bounded by time ([`HISTORY_RETENTION`]), pruned by every replica (idempotent);
//! - online/offline is computed at read time from PostgreSQL's clock (`fleet.offline_after_secs`),
//!   never stored, so no sweeper has to flip it;
//! - every number on the page, in `/v1/fleet` and in `/metrics` comes from the same queries here.

pub mod charts;
pub mod counts;
pub mod http;
pub mod metrics;
pub mod page;
pub mod record;
pub mod rollout;
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

/// Deletes history older than [`HISTORY_RETENTION`] every [`HISTORY_PRUNE_INTERVAL`] until
/// `token` is cancelled; also drops expired page sessions.
pub async fn prune(db: PgPool, token: CancellationToken) {
    let mut interval = tokio::time::interval(HISTORY_PRUNE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let retention = HISTORY_RETENTION.as_secs_f64();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
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
