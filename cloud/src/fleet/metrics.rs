//! The fleet's Prometheus gauges: devices by version and online state, by update state, needing
//! attention; the fleet's sync backlog; rollouts by state and their devices by progress (failures
//! included).
//!
//! A scrape does not touch PostgreSQL: each replica reads the gauges in the background every
//! `fleet.gauges_refresh_secs` ([`refresh`]) into its [`Cache`], and `/metrics` serves the latest
//! reading with its age (`fleet_gauges_age_seconds`). A reading older than three refreshes is not
//! served (`fleet_scrape_ok 0`), so a replica that lost PostgreSQL does not report a stale fleet
//! as current.
//!
//! These are fleet-wide facts, so every replica reports the same values: aggregate them with
//! `max()` (not `sum()`) across replicas, or scrape one.

use std::sync::{Arc, RwLock};
use std::time::Duration;
use std::time::Instant;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

type Labels = Vec<(&'static str, String)>;

/// The fleet's gauges as one reading found them.
#[derive(Default, Clone)]
pub struct Gauges {
    devices: Family<Labels, Gauge>,
    by_update_state: Family<Labels, Gauge>,
    attention: Gauge,
    backlog_events: Gauge,
    backlog_bytes: Gauge,
    backlog_oldest: Gauge,
    rollouts: Family<Labels, Gauge>,
    rollout_devices: Family<Labels, Gauge>,
}

#[cfg(test)]
impl Gauges {
    /// A series in every family, for tests: a family without series is not encoded.
    pub fn one_of_each() -> Gauges {
        let gauges = Gauges::default();
        let series = |family: &Family<Labels, Gauge>, labels: &[(&'static str, &str)]| {
            family
                .get_or_create(&labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
                .set(1);
        };
        series(
            &gauges.devices,
            &[("version", "1.0.0"), ("state", "online")],
        );
        series(&gauges.by_update_state, &[("state", "idle")]);
        series(&gauges.rollouts, &[("state", "running")]);
        series(
            &gauges.rollout_devices,
            &[
                ("channel", "stable"),
                ("version", "1.0.1"),
                ("state", "failed"),
            ],
        );
        gauges
    }
}

/// Reads the fleet's gauges from PostgreSQL (four aggregate queries).
pub async fn read(db: &PgPool, offline_after: Duration) -> Result<Gauges, sqlx::Error> {
    use super::record::secs;
    use super::sql::JUDGED;
    let gauges = Gauges::default();
    let sql = format!(
        "{JUDGED} SELECT coalesce(version, 'unknown'), online, count(*) FROM judged GROUP BY 1, 2"
    );
    let by_version: Vec<(String, bool, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(secs(offline_after))
        .fetch_all(db)
        .await?;
    for (version, online, count) in by_version {
        let state = if online { "online" } else { "offline" };
        gauges
            .devices
            .get_or_create(&vec![("version", version), ("state", state.to_owned())])
            .set(count);
    }
    let sql = format!(
        "{JUDGED} SELECT coalesce(update_state, 'unknown'), count(*) FROM judged GROUP BY 1"
    );
    let by_update: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(secs(offline_after))
        .fetch_all(db)
        .await?;
    for (state, count) in by_update {
        gauges
            .by_update_state
            .get_or_create(&vec![("state", state)])
            .set(count);
    }
    // Sums of figures from the devices' heartbeats: capped, never overflowing.
    let sql = format!(
        "{JUDGED} SELECT count(*) FILTER (WHERE attention),
                         least(coalesce(sum(backlog), 0), 9223372036854775807)::bigint,
                         least(coalesce(sum(backlog_bytes), 0), 9223372036854775807)::bigint,
                         coalesce(max(backlog_oldest_secs), 0)
         FROM judged"
    );
    let (attention, backlog, backlog_bytes, oldest): (i64, i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(secs(offline_after))
            .fetch_one(db)
            .await?;
    gauges.attention.set(attention);
    gauges.backlog_events.set(backlog);
    gauges.backlog_bytes.set(backlog_bytes);
    gauges.backlog_oldest.set(oldest);

    let rollouts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM rollouts GROUP BY state ORDER BY state")
            .fetch_all(db)
            .await?;
    for state in ["running", "paused", "halted", "aborted", "completed"] {
        let count = rollouts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, count)| *count);
        gauges
            .rollouts
            .get_or_create(&vec![("state", state.to_owned())])
            .set(count);
    }
    let progress: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT r.channel, r.version, d.state, count(*) FROM rollouts r
         JOIN rollout_devices d ON d.rollout_id = r.id
         WHERE r.state IN ('running', 'paused', 'halted') OR r.updated_at > now() - interval '1 day'
         GROUP BY r.channel, r.version, d.state ORDER BY 1, 2, 3",
    )
    .fetch_all(db)
    .await?;
    for (channel, version, state, count) in progress {
        gauges
            .rollout_devices
            .get_or_create(&vec![
                ("channel", channel),
                ("version", version),
                ("state", state),
            ])
            .set(count);
    }
    Ok(gauges)
}

/// The latest reading of the gauges, as this replica's background task left it.
pub struct Cache {
    latest: RwLock<Option<(Instant, Gauges)>>,
    refresh: Duration,
}

impl Cache {
    /// An empty cache for readings every `refresh`.
    pub fn new(refresh: Duration) -> Cache {
        Cache {
            latest: RwLock::new(None),
            refresh,
        }
    }

    fn store(&self, gauges: Gauges) {
        let mut latest = self.latest.write().unwrap_or_else(|e| e.into_inner());
        *latest = Some((Instant::now(), gauges));
    }

    /// The latest reading and its age, unless it is older than three refreshes (or there is none
    /// yet).
    pub fn current(&self) -> Option<(Gauges, Duration)> {
        let latest = self.latest.read().unwrap_or_else(|e| e.into_inner());
        let (at, gauges) = latest.as_ref()?;
        let age = at.elapsed();
        (age <= self.refresh.saturating_mul(3)).then(|| (gauges.clone(), age))
    }
}

/// Reads the gauges into `cache` now and every `cache.refresh` until `token` is cancelled; a
/// failed reading is logged and leaves the previous one to age out.
pub async fn refresh(
    db: PgPool,
    offline_after: Duration,
    cache: Arc<Cache>,
    token: CancellationToken,
) {
    let mut interval = tokio::time::interval(cache.refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        match read(&db, offline_after).await {
            Ok(gauges) => cache.store(gauges),
            Err(error) => tracing::warn!(%error, "fleet metrics: PostgreSQL did not answer"),
        }
    }
}

/// Adds the fleet's gauges (`fleet_*`) to `registry` from a cached reading and its age, and
/// `fleet_scrape_ok`: 1 when there is a recent reading, else 0 and the other fleet gauges left
/// out (the rest of the scrape is still served).
pub fn register(registry: &mut Registry, reading: Option<(Gauges, Duration)>) {
    let registry = registry.sub_registry_with_prefix("fleet");
    let scrape_ok = Gauge::<i64>::default();
    registry.register(
        "scrape_ok",
        "1 when this replica holds a recent reading of the fleet gauges from PostgreSQL",
        scrape_ok.clone(),
    );
    let Some((gauges, age)) = reading else {
        return;
    };
    scrape_ok.set(1);
    let age_gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    age_gauge.set(age.as_secs_f64());
    registry.register(
        "gauges_age_seconds",
        "How old the fleet gauges served are (read in the background every fleet.gauges_refresh_secs)",
        age_gauge,
    );
    registry.register(
        "devices",
        "Enrolled devices by version and online state",
        gauges.devices,
    );
    registry.register(
        "devices_by_update_state",
        "Devices by the update state of their latest heartbeat",
        gauges.by_update_state,
    );
    registry.register(
        "devices_needing_attention",
        "Devices the fleet page lists as needing attention",
        gauges.attention,
    );
    registry.register(
        "sync_backlog_events",
        "Outbox events not yet in the cloud, summed over the fleet",
        gauges.backlog_events,
    );
    registry.register(
        "sync_backlog_bytes",
        "Outbox bytes not yet in the cloud, summed over the fleet",
        gauges.backlog_bytes,
    );
    registry.register(
        "sync_backlog_oldest_seconds",
        "Age of the oldest event not yet in the cloud, over the fleet",
        gauges.backlog_oldest,
    );
    registry.register(
        "rollouts",
        "Rollouts by state (halted: stopped by failures)",
        gauges.rollouts,
    );
    registry.register(
        "rollout_devices",
        "Devices of live and recent rollouts by progress; state=\"failed\" counts rollout failures",
        gauges.rollout_devices,
    );
}
