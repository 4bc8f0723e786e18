//! The fleet's Prometheus gauges, read from PostgreSQL at scrape time: devices by version and
//! online state, by update state, needing attention; the fleet's sync backlog; rollouts by state
//! and their devices by progress (failures included).
//!
//! These are fleet-wide facts, so every replica reports the same values: aggregate them with
//! `max()` (not `sum()`) across replicas, or scrape one.

use std::time::Duration;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

type Labels = Vec<(&'static str, String)>;

/// The fleet's gauges as one scrape read them.
#[derive(Default)]
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

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads the fleet's gauges from PostgreSQL.
pub async fn read(db: &PgPool, offline_after: Duration) -> Result<Gauges, sqlx::Error> {
    let devices = super::devices(db, offline_after).await?;
    let gauges = Gauges::default();
    let (mut backlog, mut backlog_bytes, mut oldest) = (0_u64, 0_u64, 0_u64);
    for device in &devices {
        let version = device
            .version
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        let state = if device.online { "online" } else { "offline" };
        gauges
            .devices
            .get_or_create(&vec![("version", version), ("state", state.to_owned())])
            .inc();
        let update_state = device
            .update_state
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        gauges
            .by_update_state
            .get_or_create(&vec![("state", update_state)])
            .inc();
        if !device.attention.is_empty() {
            gauges.attention.inc();
        }
        if let Some(beat) = &device.heartbeat {
            // Figures from the devices' heartbeats: summed without overflow.
            backlog = backlog.saturating_add(beat.backlog.count);
            backlog_bytes = backlog_bytes.saturating_add(beat.backlog.bytes);
            oldest = oldest.max(beat.backlog.oldest_age_secs.unwrap_or(0));
        }
    }
    gauges.backlog_events.set(clamp(backlog));
    gauges.backlog_bytes.set(clamp(backlog_bytes));
    gauges.backlog_oldest.set(clamp(oldest));

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

/// Adds the fleet's gauges (`fleet_*`) to `registry`, and `fleet_scrape_ok`: 1 when they could be
/// read, else 0 and the other fleet gauges left out (the rest of the scrape is still served).
pub fn register(registry: &mut Registry, read: Result<Gauges, sqlx::Error>) {
    let registry = registry.sub_registry_with_prefix("fleet");
    let scrape_ok = Gauge::<i64>::default();
    registry.register(
        "scrape_ok",
        "1 when the fleet gauges could be read from PostgreSQL",
        scrape_ok.clone(),
    );
    let gauges = match read {
        Ok(gauges) => gauges,
        Err(error) => {
            tracing::warn!(%error, "fleet metrics: PostgreSQL did not answer");
            return;
        }
    };
    scrape_ok.set(1);
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
