//! What the fleet shows: the device, fleet, device-detail and rollout views (serialised as
//! `/v1/fleet` JSON and drawn by the page), and the rules that say what needs a person's look.

use std::collections::BTreeMap;

use sentra_protocol::fleet::{Heartbeat, UpdateState};
use serde::Serialize;

use super::rollout;
use super::*;

/// One device as the fleet view shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub branch_id: String,
    pub branch_name: String,
    pub hostname: Option<String>,
    /// The dead box this one succeeds (enrolled with `replaces`); that one is revoked.
    pub replaces: Option<String>,
    pub channel: String,
    pub version: Option<String>,
    pub online: bool,
    /// RFC 3339 of the last heartbeat; none if it never sent one.
    pub last_seen: Option<String>,
    /// Seconds since the last heartbeat, when offline.
    pub offline_secs: Option<i64>,
    pub update_state: Option<String>,
    /// The heartbeat as received.
    pub heartbeat: Option<Heartbeat>,
    /// Why a person should look, most urgent first; empty when all is well.
    pub attention: Vec<String>,
}

/// What in a heartbeat needs a person's look.
pub fn concerns(beat: &Heartbeat) -> Vec<String> {
    let mut out = Vec::new();
    if beat.update.state.is_failed() {
        let what = if beat.update.state == UpdateState::RolledBack {
            "update rolled back"
        } else {
            "update failed"
        };
        out.push(match &beat.update.reason {
            Some(reason) => format!("{what}: {reason}"),
            None => what.to_owned(),
        });
    }
    if !beat.healthy {
        out.push("not healthy".to_owned());
    }
    if beat.release_key.as_deref() == Some(sentra_protocol::fleet::NO_RELEASE_KEY) {
        out.push("updates off: no release key".to_owned());
    }
    match beat.backup.as_ref().map(|b| b.age_secs) {
        Some(None) => out.push("never backed up".to_owned()),
        Some(Some(age)) if age >= BACKUP_ATTENTION_SECS => {
            out.push(format!("last backup {} ago", human(clamp(age))));
        }
        _ => {}
    }
    if let Some(age) = beat.backlog.oldest_age_secs
        && age >= BACKLOG_ATTENTION_SECS
    {
        out.push(format!(
            "sync backlog: {} events, oldest {}",
            beat.backlog.count,
            human(clamp(age))
        ));
    }
    if beat.parked > 0 {
        out.push(format!("{} parked events", beat.parked));
    }
    // saturating: a box may send i64::MIN, whose absolute value does not fit.
    if beat.skew_ms.saturating_abs() >= SKEW_ATTENTION_MS {
        out.push(format!("clock off by {} s", beat.skew_ms / 1000));
    }
    if let Some(printer) = &beat.printer
        && !matches!(printer.as_str(), "ready" | "idle" | "disabled")
    {
        out.push(format!("printer {printer}"));
    }
    if let Some(scanner) = &beat.scanner
        && scanner == "error"
    {
        out.push(format!("scanner {scanner}"));
    }
    if let (Some(free), Some(total)) = (
        beat.resources.disk_free_bytes,
        beat.resources.disk_total_bytes,
    ) && total > 0
        && free.saturating_mul(100) / total < DISK_ATTENTION_PCT
    {
        // Figures from a device's heartbeat: no arithmetic that a wild one can overflow.
        out.push(format!("disk {} % free", free.saturating_mul(100) / total));
    }
    out
}

/// A duration for people: "45 s", "12 min", "3 h 5 min", "2 d 4 h".
pub fn human(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// The whole fleet at a glance.
#[derive(Debug, Serialize)]
pub struct FleetView {
    pub offline_after_secs: u64,
    pub summary: Summary,
    pub rollouts: Vec<rollout::RolloutSummary>,
    /// Which page of the devices the filter matches `devices` is.
    pub page: PageInfo,
    /// One page of the devices the filter matches: those needing attention first (longest
    /// offline first), then by branch.
    pub devices: Vec<DeviceView>,
}

/// Where a page of devices sits in what the filter matches.
#[derive(Debug, Clone, Serialize)]
pub struct PageInfo {
    /// 1-based.
    pub page: u32,
    pub size: u32,
    /// Devices the filter matches, over all pages.
    pub matching: usize,
    /// Pages of `size` they fill (at least 1).
    pub pages: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub devices: usize,
    pub online: usize,
    pub offline: usize,
    pub needing_attention: usize,
    pub by_version: BTreeMap<String, usize>,
    pub by_update_state: BTreeMap<String, usize>,
    pub by_channel: BTreeMap<String, usize>,
}

/// One device with its day of history.
#[derive(Debug, Serialize)]
pub struct DeviceDetail {
    pub device: DeviceView,
    pub history: Vec<HistoryPoint>,
    pub rollouts: Vec<DeviceRollout>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct HistoryPoint {
    pub at: String,
    pub version: String,
    pub update_state: String,
    pub healthy: bool,
    pub backlog: i64,
    pub backlog_bytes: i64,
    pub skew_ms: i64,
    pub disk_free_bytes: Option<i64>,
    pub mem_available_bytes: Option<i64>,
    /// The oldest change not yet in the cloud, seconds (none before migration 0016).
    pub backlog_oldest_secs: Option<i64>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct DeviceRollout {
    pub rollout_id: String,
    pub version: String,
    pub wave: Option<i32>,
    pub state: String,
    pub reason: Option<String>,
}

/// A rollout with each device's part in it.
#[derive(Debug, Serialize)]
pub struct RolloutDetail {
    pub rollout: rollout::RolloutSummary,
    pub devices: Vec<RolloutDevice>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct RolloutDevice {
    pub device_id: String,
    pub branch_id: String,
    pub wave: Option<i32>,
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_say_them() {
        for (secs, text) in [
            (5, "5 s"),
            (120, "2 min"),
            (3_900, "1 h 5 min"),
            (190_000, "2 d 4 h"),
        ] {
            assert_eq!(human(secs), text);
        }
    }

    #[test]
    fn the_widest_skew_is_a_concern_not_a_panic() {
        let beat: Heartbeat = serde_json::from_value(serde_json::json!({
            "version": "1.0.0", "uptime_secs": 1, "update": {"state": "idle"},
            "skew_ms": i64::MIN,
        }))
        .expect("a heartbeat");
        assert_eq!(
            concerns(&beat),
            [format!("clock off by {} s", i64::MIN / 1000)]
        );
    }

    #[test]
    fn concerns_name_what_is_wrong() {
        let beat: Heartbeat = serde_json::from_value(serde_json::json!({
            "version": "1.0.0", "uptime_secs": 1, "healthy": false,
            "update": {"state": "rolled-back", "reason": "not ready in 60 s"},
            "backlog": {"count": 10, "bytes": 100, "oldest_age_secs": 7200},
            "parked": 2, "skew_ms": -90000, "printer": "paper_out",
            "resources": {"disk_total_bytes": 100, "disk_free_bytes": 5}, "release_key": "none",
            "backup": {"age_secs": 259_200},
        }))
        .expect("a heartbeat");
        assert_eq!(
            concerns(&beat),
            [
                "update rolled back: not ready in 60 s",
                "not healthy",
                "updates off: no release key",
                "last backup 3 d 0 h ago",
                "sync backlog: 10 events, oldest 2 h 0 min",
                "2 parked events",
                "clock off by -90 s",
                "printer paper_out",
                "disk 5 % free",
            ]
        );
    }
}
