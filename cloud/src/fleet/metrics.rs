//! The fleet's Prometheus gauges, read from PostgreSQL at scrape time: devices by version and
//! online state, by update state, needing attention; the fleet's sync backlog; rollouts by state
//! and their devices by progress (failures included).
//!
//! These are fleet-wide facts, so every replica reports the same values: aggregate them with
//! `max()` (not `sum()`) across replicas, or scrape one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use sqlx::PgPool;

/// Escapes a label value for the text exposition format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// The fleet's gauges in the text exposition format.
pub async fn render(db: &PgPool, offline_after: Duration) -> Result<String, sqlx::Error> {
    let devices = super::devices(db, offline_after).await?;
    let mut out = String::new();

    let mut by_version: BTreeMap<(String, &str), u64> = BTreeMap::new();
    let mut by_update: BTreeMap<String, u64> = BTreeMap::new();
    let (mut attention, mut backlog, mut backlog_bytes, mut oldest) = (0_u64, 0_u64, 0_u64, 0_u64);
    for device in &devices {
        let version = device
            .version
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        let state = if device.online { "online" } else { "offline" };
        *by_version.entry((version, state)).or_default() += 1;
        *by_update
            .entry(
                device
                    .update_state
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
            )
            .or_default() += 1;
        if !device.attention.is_empty() {
            attention += 1;
        }
        if let Some(beat) = &device.heartbeat {
            // Figures from the devices' heartbeats: summed without overflow.
            backlog = backlog.saturating_add(beat.backlog.count);
            backlog_bytes = backlog_bytes.saturating_add(beat.backlog.bytes);
            oldest = oldest.max(beat.backlog.oldest_age_secs.unwrap_or(0));
        }
    }
    gauge(
        &mut out,
        "sentra_fleet_devices",
        "Enrolled devices by version and online state.",
    );
    for ((version, state), count) in &by_version {
        let _ = writeln!(
            out,
            "sentra_fleet_devices{{version=\"{}\",state=\"{state}\"}} {count}",
            label(version)
        );
    }
    gauge(
        &mut out,
        "sentra_fleet_devices_by_update_state",
        "Devices by the update state of their latest heartbeat.",
    );
    for (state, count) in &by_update {
        let _ = writeln!(
            out,
            "sentra_fleet_devices_by_update_state{{state=\"{}\"}} {count}",
            label(state)
        );
    }
    gauge(
        &mut out,
        "sentra_fleet_devices_needing_attention",
        "Devices the fleet page lists as needing attention.",
    );
    let _ = writeln!(out, "sentra_fleet_devices_needing_attention {attention}");
    gauge(
        &mut out,
        "sentra_fleet_sync_backlog_events",
        "Outbox events not yet in the cloud, summed over the fleet.",
    );
    let _ = writeln!(out, "sentra_fleet_sync_backlog_events {backlog}");
    gauge(
        &mut out,
        "sentra_fleet_sync_backlog_bytes",
        "Outbox bytes not yet in the cloud, summed over the fleet.",
    );
    let _ = writeln!(out, "sentra_fleet_sync_backlog_bytes {backlog_bytes}");
    gauge(
        &mut out,
        "sentra_fleet_sync_backlog_oldest_seconds",
        "Age of the oldest event not yet in the cloud, over the fleet.",
    );
    let _ = writeln!(out, "sentra_fleet_sync_backlog_oldest_seconds {oldest}");

    let rollouts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM rollouts GROUP BY state ORDER BY state")
            .fetch_all(db)
            .await?;
    gauge(
        &mut out,
        "sentra_fleet_rollouts",
        "Rollouts by state (halted: stopped by failures).",
    );
    for state in ["running", "paused", "halted", "aborted", "completed"] {
        let count = rollouts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, count)| *count);
        let _ = writeln!(out, "sentra_fleet_rollouts{{state=\"{state}\"}} {count}");
    }
    let progress: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT r.channel, r.version, d.state, count(*) FROM rollouts r
         JOIN rollout_devices d ON d.rollout_id = r.id
         WHERE r.state IN ('running', 'paused', 'halted') OR r.updated_at > now() - interval '1 day'
         GROUP BY r.channel, r.version, d.state ORDER BY 1, 2, 3",
    )
    .fetch_all(db)
    .await?;
    gauge(
        &mut out,
        "sentra_fleet_rollout_devices",
        "Devices of live and recent rollouts by progress; state=\"failed\" counts rollout failures.",
    );
    for (channel, version, state, count) in &progress {
        let _ = writeln!(
            out,
            "sentra_fleet_rollout_devices{{channel=\"{}\",version=\"{}\",state=\"{}\"}} {count}",
            label(channel),
            label(version),
            label(state)
        );
    }
    Ok(out)
}
